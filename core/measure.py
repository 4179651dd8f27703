"""What a clamp does, in numbers: p(target's first token) after the prompt, the rate of sampled replies
that contain the target word, and the clamped neurons' natural activation on the prompt."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import GenerationError
from .clamp import FORWARD_LOCK, recording
from .experiment import Experiment, GenSettings
from .generate import Prompt, build_prompt, fluency, generate, next_token_probs, on_model
from .refs import NeuronRef


@dataclass
class Target:
    word: str
    token_id: int
    token: str  # the first token's text, e.g. " dog"
    tokens: int  # how many tokens the word takes (only the first is measured)


@dataclass
class Activation:
    ref: NeuronRef
    min: float
    max: float
    last: float

    def as_dict(self) -> dict:
        return {"layer": self.ref.layer, "neuron": self.ref.neuron, "min": self.min, "max": self.max, "last": self.last}


@dataclass
class Side:
    """One run: baseline or clamped."""

    text: str = ""
    target_prob: float | None = None
    target_rate: float | None = None
    samples: list[str] = field(default_factory=list)
    cancelled: bool = False
    fluency: float | None = None  # with samples: their mean log-prob per token under the unclamped model

    def as_dict(self) -> dict:
        out = {"text": self.text, "target_prob": self.target_prob, "target_rate": self.target_rate}
        return out if not self.samples else {**out, "fluency": self.fluency}


def target_token(lm, prompt: Prompt, word: str) -> Target:
    """The first token of ``word`` as it would continue the prompt: with a leading space when the prompt
    ends in a non-space character and the word has none (so "dog" after "My pet is a" is " dog")."""
    tok = lm.tokenizer
    text = word
    if word and not word[0].isspace() and prompt.text and not prompt.text[-1].isspace():
        text = " " + word
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if not ids:
        ids = tok(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise GenerationError(f"the target '{word}' has no tokens")
    return Target(word, int(ids[0]), tok.decode([ids[0]]), len(ids))


def contains_word(text: str, word: str) -> bool:
    """Case-insensitive; the word must start at a word boundary ("dogs" counts, "hotdog" does not)."""
    word = word.strip()
    return bool(word) and re.search(r"(?<!\w)" + re.escape(word), text, re.IGNORECASE) is not None


def natural_activation(lm, prompt: Prompt, refs: list[NeuronRef]) -> list[Activation]:
    """Each neuron's unclamped activation over the prompt's positions."""
    if not refs:
        return []
    with FORWARD_LOCK, recording(lm.adapter, refs) as got, torch.inference_mode():
        lm.model(input_ids=on_model(lm, prompt.ids), use_cache=False)
    return [Activation(r, float(got[r].min()), float(got[r].max()), float(got[r][-1])) for r in refs]


def suggest_value(act: Activation, factor: float = 4.0) -> float:
    """A clamp value well past what the prompt gives: ``factor`` times the larger-magnitude extreme."""
    peak = act.max if abs(act.max) >= abs(act.min) else act.min
    if abs(peak) < 1e-6:
        return 1.0
    return round(peak * factor, 2)


@dataclass
class Result:
    prompt: Prompt
    target: Target | None
    baseline: Side
    clamped: Side
    activation: list[Activation]


OnStream = Callable[[str, str], None]  # (side, new text)


def run_experiment(
    lm,
    exp: Experiment,
    on_text: OnStream | None = None,
    cancel: threading.Event | None = None,
    prepared: Prompt | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Baseline, then clamped: p(target), the reply (streamed), and with ``samples`` the target rate;
    ``progress(done, total)`` counts tokens: samples x max_new_tokens per side sampled, then as many scored
    for fluency (a reply that ends early counts whole)."""
    prompt = prepared or build_prompt(lm, exp.prompt, exp.settings.chat)
    target = target_token(lm, prompt, exp.target) if exp.target else None
    activation = natural_activation(lm, prompt, [c.ref for c in exp.clamps.clamps])
    sides = {"baseline": Side(), "clamped": Side()}
    for name, side in sides.items():
        clamps = exp.clamps if name == "clamped" else None
        if target is not None:
            side.target_prob = float(next_token_probs(lm, prompt, clamps)[target.token_id])
        if cancel is not None and cancel.is_set():
            side.cancelled = True
            continue
        stream = (lambda text, name=name: on_text(name, text)) if on_text else None
        gen = generate(lm, prompt, exp.settings, clamps, on_text=stream, cancel=cancel)
        side.text, side.cancelled = gen.text, gen.cancelled
    if exp.samples and target is not None:
        sampling = (
            exp.settings
            if exp.settings.sampling
            else GenSettings(exp.settings.max_new_tokens, 1.0, exp.settings.top_p, exp.settings.seed, exp.settings.chat)
        )
        n, length = exp.samples, sampling.max_new_tokens
        total = 4 * n * length  # each side: n x length tokens sampled, then scored
        for i, (name, side) in enumerate(sides.items()):
            if cancel is not None and cancel.is_set():
                break
            start = 2 * i * n * length

            def on_step(steps: int, start: int = start) -> None:  # given only with a progress callback
                if progress is not None:
                    progress(start + min(steps, length) * n, total)

            def on_reply(scored: int, start: int = start) -> None:
                if progress is not None:
                    progress(start + n * length + scored * length, total)

            if progress is not None:
                progress(start, total)
            gen = generate(
                lm,
                prompt,
                sampling,
                exp.clamps if name == "clamped" else None,
                num=n,
                cancel=cancel,
                on_step=on_step if progress is not None else None,
            )
            side.samples = gen.texts
            side.cancelled = side.cancelled or gen.cancelled
            side.target_rate = sum(contains_word(t, target.word) for t in gen.texts) / len(gen.texts)
            side.fluency = fluency(
                lm,
                prompt,
                gen.ids,  # scored without the clamps, for both sides
                on_reply if progress is not None else None,
            )
    return Result(prompt, target, sides["baseline"], sides["clamped"], activation)
