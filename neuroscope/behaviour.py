"""What neurons do on text, for the API: trace a prompt, compute max-activating examples over a corpus,
read a neuron's examples and GLU cases, and the decode <-> behaviour agreement. neuroscope.api's Model and
Neuron call these."""

from __future__ import annotations

import threading

from .cache.examples import Examples
from .cache.store import Store
from .choices import DIRECTIONS
from .core.refs import NeuronRef
from .errors import UsageError
from .results import Records, as_ref

MAX_TOKENS = 100_000_000


DEFAULT_WINDOW = 128


def check_examples_args(tokens: int, per_neuron: int, window: int, batch: int) -> None:
    for name, value, low, high in (
        ("--tokens", tokens, 1, MAX_TOKENS),
        ("--per-neuron", per_neuron, 1, 1000),
        ("--window", window, 8, 8192),
        ("--batch-size", batch, 1, 4096),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UsageError(f"{name} must be a whole number from {low:,} to {high:,}")
    if tokens < window:
        raise UsageError(f"--tokens {tokens:,} is less than one window of {window} tokens")


def trace(model, prompt: str, chat: bool = False, top: int = 10, neurons=None):
    """Every token's ``top`` neurons by |activation| (with their decoded labels: the top token of the down
    view in the direction of the activation's sign), and with ``neurons`` their activation at every token."""
    from .errors import GenerationError

    if not isinstance(prompt, str) or not prompt.strip():  # before torch and the tokenizer (5 s for a GGUF's)
        raise GenerationError("the prompt is empty: give --prompt TEXT")
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 1000:
        raise UsageError("--top must be a whole number from 1 to 1000")
    refs = [as_ref(r) for r in neurons] if neurons else None
    if refs:
        model.info.check_refs(refs)  # before anything is loaded
    if chat and not model.info.chat_template:
        raise GenerationError(f"{model.name} has no chat template: drop --chat and write the prompt out in full")
    from .core.activations import TokenTrace, Trace
    from .core.activations import trace as run_trace
    from .core.generate import Tokenized, build_prompt

    built = build_prompt(Tokenized(model.source, model.tokenizer()), prompt, chat)
    model.info.check_new_tokens(built.length)
    with model.store("down") as store:  # labels: decoded first when the cache lacks them
        lm = model.loaded()
        per_token, traces, texts = run_trace(lm, built.ids, top, refs)
        tokens = []
        for index, (firings, text) in enumerate(zip(per_token, texts)):
            for f in firings:
                got = store.top(f.layer, f.neuron, "down", "pos" if f.activation > 0 else "neg")
                f.label = got[0].token if got else None
            tokens.append(TokenTrace(index, text, firings))
    return Trace(model.name, prompt, tokens, traces)


def examples(
    model,
    corpus=None,
    tokens: int = 100_000,
    per_neuron: int = 20,
    window: int | None = None,
    batch: int = 8,
    rebuild: bool = False,
    cancel: threading.Event | None = None,
    commit_s: float = 30.0,
    text_column: str | None = None,
):
    """Max-activating examples of every neuron over ``corpus`` (what core.corpus.open_corpus takes: a path,
    a saved dataset, a Hugging Face dataset id; None: the default corpus), its ``text_column`` for the
    tabular kinds (default ``text``). ``window``: tokens per row (default 128, or the model's context where
    that is shorter)."""
    from .core.corpus import open_corpus

    check_examples_args(tokens, per_neuron, DEFAULT_WINDOW if window is None else window, batch)
    info = model.info  # headers only: the context length
    context = info.shape.context
    if window is None:
        window = min(DEFAULT_WINDOW, context) if context else DEFAULT_WINDOW
        check_examples_args(tokens, per_neuron, window, batch)
    elif context and window > context:
        raise UsageError(f"--window {window} exceeds {model.name}'s context of {context:,} tokens")
    text = open_corpus(corpus, text_column)  # missing, empty, binary, no column: before anything loads
    # torch is imported only after the checks (bad input answers in 0.3 s, not 1.5)
    from .core.examples import ExamplesRecipe, ensure_examples

    recipe = ExamplesRecipe(text, tokens, per_neuron, window, batch, commit_s)
    progress, close = model._progress("examples")
    try:
        return ensure_examples(
            model.source,
            info,
            recipe,
            model.loaded,
            model.tokenizer(),
            cache_dir=model.cache_dir,
            rebuild=rebuild,
            progress=progress,
            note=model.note,
            cancel=cancel,
        )
    finally:
        close()


def _examples_store(model) -> Store:
    cached = model._cached_store()
    if cached is None or not Examples(cached).complete:
        if cached is not None:
            cached.close()
        raise UsageError(
            f"{model.name} has no examples yet: run `neuroscope examples {model.typed_arg}` (or model.examples())"
        )
    return cached


def require_examples(model) -> None:
    """UsageError (the hint names the model as the user typed it) unless the examples are there: before a
    decode that would be wasted on a command that needs them."""
    _examples_store(model).close()


def neuron_examples(model, ref: NeuronRef, sign: str = "pos", limit: int | None = None, context: int = 24):
    if sign not in DIRECTIONS:
        raise UsageError(f"unknown sign {sign!r}: choose pos or neg")
    with _examples_store(model) as store:
        ref.check(store.layers, store.neurons)
        return Records(Examples(store).neuron(ref.layer, ref.neuron, sign, limit, context))


def neuron_cases(model, ref: NeuronRef) -> dict:
    """{"++": n, "+-": n, "-+": n, "--": n} over the examples' corpus (None for an ungated MLP), and the
    fraction of its tokens where the activation is positive."""
    from .cache.examples import CASES

    with _examples_store(model) as store:
        ref.check(store.layers, store.neurons)
        ex = Examples(store)
        cases, positive = ex.counts(ref.layer)
        spec = ex.run_spec
        total = int(spec["windows"]) * int(spec["window"])
        return {
            "cases": None if cases is None else {c: int(cases[i, ref.neuron]) for i, c in enumerate(CASES)},
            "positive": int(positive[ref.neuron]) / max(1, total),
        }


def agreement(model, seed: int = 0):
    """Decode <-> behaviour agreement per view and layer (core.agreement); decodes first when needed."""
    from .core.agreement import agreement as compute

    require_examples(model)  # none: one line before any decode
    model.store().close()  # every view decoded (on demand)
    with _examples_store(model) as store:
        return compute(store, Examples(store), seed=seed)


def activations(model, prompt: str, refs, chat: bool | None = None) -> Records:
    """The natural (unclamped) activation of each neuron over the prompt's tokens: Activation(ref, min, max,
    last). ``chat`` None: through the chat template when the model has one."""
    from .core.generate import Tokenized, build_prompt, has_chat_template
    from .core.measure import natural_activation

    refs = [as_ref(r) for r in refs]
    model.info.check_refs(refs)
    tokens = Tokenized(model.source, model.tokenizer())
    chat = has_chat_template(tokens.tokenizer) if chat is None else chat
    built = build_prompt(tokens, prompt, chat)  # an empty prompt: before the model loads
    lm = model.loaded()
    return Records(natural_activation(lm, built, refs))
