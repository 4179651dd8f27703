"""Max-activating examples: stream a corpus through the model once and keep, for every neuron, its top-N
positions by activation for each sign, how often each GLU case occurs and how often it is positive.

The corpus is one token stream cut into windows of ``window`` tokens, run ``batch`` windows at a time. The
running top-N lives on the model's device and is merged per batch inside the down projection's pre-hook
(candidates: the batch's own per-neuron top-N), so no full activation matrix ever reaches Python and memory
is layers x neurons x N records whatever the corpus size. ``on_step`` receives the state every few batches
to commit it (cache.examples), which is what makes a run resumable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..choices import DEFAULT_TOP_K
from ..errors import Cancelled
from .clamp import FORWARD_LOCK, down_module
from .corpus import Corpus
from .example_state import LayerState


def _sign_preserving(fn) -> bool:
    """True when an MLP's activation function is a module of its own with sign(f(x)) == sign(x) (SiLU, GELU):
    then sign(gate) is sign(act_fn(gate)), and sign(up) follows from the activation's sign."""
    if not isinstance(fn, torch.nn.Module):
        return False
    probe = torch.tensor([-3.0, -0.5, 0.5, 3.0])
    with torch.no_grad():
        out = fn(probe)
    return bool(torch.equal(torch.sign(out), torch.sign(probe)))


class ExampleRun:
    """Hooks that fold every forward pass into the per-layer states: the down projection's input (the
    activation) and, for gated MLPs, what gives the gate's sign (the activation function's output when it
    preserves signs, else the gate projection's output) and the up projection's output when needed."""

    def __init__(self, lm, states: dict[int, LayerState]):
        self.lm, self.states = lm, states
        self.gated = "gate" in lm.adapter.names
        self.positions: torch.Tensor | None = None
        self._pending: dict[int, dict[str, torch.Tensor]] = {}

    def hooks(self):
        adapter = self.lm.adapter
        handles = []
        for layer in self.states:
            handles.append(
                down_module(adapter, layer).register_forward_pre_hook(
                    lambda _m, args, layer=layer: self._fold(layer, args[0])
                )
            )
            if not self.gated:
                continue
            mlp = adapter.layers[layer]
            fn = getattr(mlp, "act_fn", None)
            if _sign_preserving(fn) and all(
                getattr(adapter.layers[other], "act_fn", None) is not fn for other in self.states if other != layer
            ):
                handles.append(
                    fn.register_forward_hook(lambda _m, _a, out, layer=layer: self._keep(layer, "gate_sign", out))
                )
                continue
            for view in ("gate", "up"):
                handles.append(
                    getattr(mlp, adapter.names[view]).register_forward_hook(
                        lambda _m, _a, out, layer=layer, view=view: self._keep(layer, view, out)
                    )
                )
        return handles

    def _keep(self, layer: int, view: str, out: torch.Tensor) -> None:
        self._pending.setdefault(layer, {})[view] = out

    def _fold(self, layer: int, act: torch.Tensor) -> None:
        n = act.shape[-1]
        pending = self._pending.pop(layer, {})
        flat = act.reshape(-1, n).float()
        gate = up = None
        if "gate_sign" in pending:  # act = f(gate) * up with sign(f(gate)) == sign(gate):
            gate = pending["gate_sign"].reshape(-1, n) > 0  # up's sign follows (update derives it)
        elif self.gated:
            gate, up = pending["gate"].reshape(-1, n).float(), pending["up"].reshape(-1, n).float()
        assert self.positions is not None  # stream() sets them before every forward pass
        self.states[layer].update(flat, gate, up, self.positions)


@torch.inference_mode()
def stream(
    lm,
    windows: np.ndarray,
    start: int,
    states: dict[int, LayerState],
    batch: int,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    on_step: Callable[[int], None] | None = None,
    step_s: float = 30.0,
) -> None:
    """Run windows[start:] (int32 [W, window]) through the model ``batch`` at a time, folding every batch into
    ``states``; ``on_step(windows_done)`` every ``step_s`` seconds and at the end (that is when the caller
    commits). Cancelling stops between batches after a last on_step."""
    from .generate import model_device

    device = model_device(lm.model)
    run = ExampleRun(lm, states)
    total, window = windows.shape
    last = time.monotonic()
    with FORWARD_LOCK:
        handles = run.hooks()
        try:
            done = start
            if progress is not None:
                progress(done * window, total * window)
            while done < total:
                if cancel is not None and cancel.is_set():
                    if on_step is not None:
                        on_step(done)
                    raise Cancelled()
                stop = min(total, done + batch)
                ids = torch.from_numpy(windows[done:stop].astype(np.int64)).to(device)
                run.positions = torch.arange(done * window, stop * window, device=device)
                lm.model(input_ids=ids, use_cache=False)
                done = stop
                if progress is not None:
                    progress(done * window, total * window)
                if on_step is not None and (done == total or time.monotonic() - last >= step_s):
                    on_step(done)
                    last = time.monotonic()
        finally:
            for handle in handles:
                handle.remove()


@dataclass
class ExamplesRecipe:
    """Every neuron's top ``per_neuron`` examples per sign over ``tokens`` tokens of ``corpus`` (a core.corpus.Corpus)
    in windows of ``window``; ``batch`` (windows a pass) and ``commit_s`` (what a stop can lose) change only the run."""

    corpus: Corpus
    tokens: int
    per_neuron: int
    window: int
    batch: int = 8
    commit_s: float = 30.0

    def spec(self) -> dict:
        """What the cache records and compares: a run with another spec starts again."""
        return {
            "corpus": self.corpus.name,
            "corpus_key": self.corpus.key,
            "tokens": int(self.tokens),
            "window": int(self.window),
            "per_neuron": int(self.per_neuron),
        }


@dataclass
class ExamplesResult:
    path: object
    corpus: str
    tokens: int  # corpus tokens the examples cover
    processed: int  # tokens run in this call (0 when everything was cached)
    seconds: float
    complete: bool
    source: dict | None = None  # what the corpus is (core.corpus.Corpus.source: kind, path, column, …)


def ensure_examples(
    source,
    info,
    recipe: ExamplesRecipe,
    load: Callable,
    tokenizer,
    *,
    cache_dir=None,
    rebuild: bool = False,
    progress: Callable[[int, int], None] | None = None,
    note: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> ExamplesResult:
    """Compute (or resume, or find cached) the recipe's examples of every neuron. The corpus is tokenized
    (``tokenizer``) before anything is written, so a corpus too short for one window costs nothing;
    ``load()`` gives the whole model (a LoadedModel), called only when work remains. The state is committed
    every ``recipe.commit_s`` seconds (and when the run ends or is cancelled)."""
    from ..cache.catalog import cache_path, decode_lock
    from ..cache.examples import Examples, stored_spec
    from ..cache.store import Store
    from .loading.adapter import token_texts
    from .pipeline import cache_meta

    note = note or (lambda _msg: None)
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    corpus, tokens, window = recipe.corpus, recipe.tokens, recipe.window
    spec = recipe.spec()
    started = time.perf_counter()

    def result(ex: Examples, processed: int) -> ExamplesResult:
        s = ex.run_spec
        return ExamplesResult(
            path,
            s["corpus"],
            s["windows"] * s["window"],
            processed,
            time.perf_counter() - started,
            bool(s["complete"]),
            s.get("corpus_source") or corpus.source,
        )

    def same(old: dict | None) -> bool:
        return bool(not rebuild and old and all(old.get(k) == v for k, v in spec.items()))

    fresh = None
    if not same(stored_spec(path)):  # a new run: tokenize first (a bad corpus writes nothing)
        fresh = _corpus_windows(corpus, tokenizer, tokens, window)
    with decode_lock(path, note):
        store = Store(path)
        try:
            if not store.ready:
                store.initialize(
                    cache_meta(source, info, DEFAULT_TOP_K, None), token_texts(tokenizer, info.shape.vocab)
                )
            ex = Examples(store)
            ex.create()
            old = ex.spec or {}
            if same(old) and ex.complete:
                return result(ex, 0)
            lm = load()
            device = next(lm.model.parameters()).device
            gated = "gate" in lm.adapter.names
            n = lm.adapter.neurons
            if same(old) and old.get("windows_done", 0) > 0:
                windows_ = ex.windows()
                states = {layer: LayerState.from_numpy(a, device) for layer, a in ex.states(n).items()}
                start = int(old["windows_done"])
                note(f"resuming examples: {start * window:,} of {len(windows_) * window:,} tokens already done")
            else:
                if old:
                    note("starting the examples again: the corpus or its settings changed")
                windows_ = fresh if fresh is not None else _corpus_windows(corpus, tokenizer, tokens, window)
                ex.start({**spec, "corpus_source": corpus.source}, windows_)  # recorded, not compared
                states = {
                    layer: LayerState.empty(n, recipe.per_neuron, gated, device)
                    for layer in range(lm.adapter.num_layers)
                }
                start = 0
            last = [time.perf_counter()]

            def commit(done: int) -> None:
                now = time.perf_counter()
                ex.commit({layer: s.to_numpy() for layer, s in states.items()}, done, now - last[0])
                last[0] = now

            stream(lm, windows_, start, states, recipe.batch, progress, cancel, commit, recipe.commit_s)
            return result(ex, (len(windows_) - start) * window)
        finally:
            store.close()


def _corpus_windows(corpus, tokenizer, tokens: int, window: int) -> np.ndarray:
    from .corpus import windows

    return windows(corpus, tokenizer, tokens, window)
