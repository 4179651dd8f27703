"""Exact attribution on text for the API and the CLI: which sources (the embedding, attention heads, earlier
neurons, biases) make up a neuron's read pre-activations at one token of a prompt (core.circuits.attribution),
with the neurons' labels. Everything the user typed is checked before the model loads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import GenerationError, UsageError
from .results import as_ref

if TYPE_CHECKING:
    from .core.circuits.attribution import Attribution

Model = Any  # neuroscope.api.Model, which calls this module: importing it here, even for typing, is a cycle

DEFAULT_TOP = 20
MAX_TOP = 1000


def check_top(top) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP:
        raise UsageError(f"--top must be a whole number from 1 to {MAX_TOP}, not {top}")
    return top


def check_at(at, length: int | None = None) -> int | None:
    """``at`` as given (None: where the neuron fires most); with ``length``, inside the prompt."""
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int):
        raise UsageError(f"--at must be a whole number (a token index; negative counts from the end), not {at!r}")
    if length is not None and not -length <= at < length:
        raise UsageError(f"--at {at} is outside the prompt's {length} tokens (0 to {length - 1}, or -1 to -{length})")
    return at


def attribute(model: Model, prompt: str, ref, at: int | None = None, top: int = DEFAULT_TOP, chat: bool = False):
    """``ref``'s read pre-activations at token ``at`` of ``prompt`` split into their sources (an Attribution:
    ``as_dict()`` is the CLI's "attribution" JSON, ``to_pandas()`` one row per source)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise GenerationError("the prompt is empty: give --prompt TEXT")
    top = check_top(top)
    check_at(at)
    neuron = as_ref(ref)
    model.info.check_ref(neuron)
    if chat and not model.info.chat_template:
        raise GenerationError(f"{model.name} has no chat template: drop --chat and write the prompt out in full")
    from .core.circuits.attribution import attribute as run
    from .core.generate import Tokenized, build_prompt

    built = build_prompt(Tokenized(model.source, model.tokenizer()), prompt, chat)
    check_at(at, built.length)  # before the model loads
    with model.store("down") as store:  # the neurons' labels: decoded first when the cache lacks them
        result = run(model.loaded(), built.ids, neuron, at, top)
        label_sources(store, result)
    return result


def label_sources(store, result: Attribution) -> None:
    """Each listed neuron gets the label of what it writes in the sign of its activation (its concept label,
    else its top token); the embedding gets the token's text."""
    from .concepts import neuron_label

    for read in result.reads.values():
        for part in read.sources:
            if part.kind == "embed":
                part.label = result.token
            elif part.kind == "neuron" and part.layer is not None and part.neuron is not None:
                direction = "pos" if (part.activation or 0) > 0 else "neg"
                got = neuron_label(store, part.layer, part.neuron, "down", direction)
                if got is not None:
                    part.label = got.label
                else:
                    tops = store.top(part.layer, part.neuron, "down", direction)
                    part.label = tops[0].token if tops else None
