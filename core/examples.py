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

from .activations import case_codes
from .clamp import FORWARD_LOCK, down_module
from .errors import Cancelled

SIGNS = ("pos", "neg")


@dataclass
class LayerState:
    """One layer's running results, on the device. vals/pos/case: [2 signs, N, n]; cases [4, n]; positive [n]."""

    vals: torch.Tensor
    pos: torch.Tensor
    case: torch.Tensor
    cases: torch.Tensor | None
    positive: torch.Tensor

    @classmethod
    def empty(cls, n: int, per_neuron: int, gated: bool, device) -> "LayerState":
        return cls(torch.full((2, per_neuron, n), -torch.inf, device=device),
                   torch.full((2, per_neuron, n), -1, dtype=torch.int64, device=device),
                   torch.zeros((2, per_neuron, n), dtype=torch.int8, device=device),
                   torch.zeros((4, n), dtype=torch.int64, device=device) if gated else None,
                   torch.zeros(n, dtype=torch.int64, device=device))

    def to_numpy(self) -> dict[str, np.ndarray]:
        out = {"vals": self.vals.cpu().numpy(), "pos": self.pos.cpu().numpy(), "case": self.case.cpu().numpy(),
               "positive": self.positive.cpu().numpy()}
        out["cases"] = None if self.cases is None else self.cases.cpu().numpy()
        return out

    @classmethod
    def from_numpy(cls, arrays: dict, device) -> "LayerState":
        def t(a, dtype=None):
            return torch.from_numpy(np.array(a, copy=True)).to(device=device, dtype=dtype)

        return cls(t(arrays["vals"], torch.float32), t(arrays["pos"], torch.int64), t(arrays["case"], torch.int8),
                   None if arrays["cases"] is None else t(arrays["cases"], torch.int64),
                   t(arrays["positive"], torch.int64))

    def update(self, act: torch.Tensor, gate: torch.Tensor | None, up: torch.Tensor | None,
               positions: torch.Tensor) -> None:
        """Merge one batch: act/gate/up [rows, n] float32, positions [rows] int64 (global token indices)."""
        codes = case_codes(gate, up) if gate is not None else torch.zeros_like(act, dtype=torch.int8)
        self.positive += (act > 0).sum(0)
        if self.cases is not None:
            n = act.shape[1]
            flat = codes.long() * n + torch.arange(n, device=act.device)
            self.cases += torch.bincount(flat.view(-1), minlength=4 * n).view(4, n)
        per = self.vals.shape[1]
        k = min(per, act.shape[0])
        for sign, signed in enumerate((act, -act)):
            v, rows = signed.topk(k, dim=0)                                           # [k, n]
            all_v = torch.cat([self.vals[sign], v])
            all_p = torch.cat([self.pos[sign], positions[rows]])
            all_c = torch.cat([self.case[sign], codes.gather(0, rows)])
            keep = all_v.topk(per, dim=0).indices
            self.vals[sign] = all_v.gather(0, keep)
            self.pos[sign] = all_p.gather(0, keep)
            self.case[sign] = all_c.gather(0, keep)


class ExampleRun:
    """Hooks that fold every forward pass into the per-layer states."""

    def __init__(self, lm, states: dict[int, LayerState]):
        self.lm, self.states = lm, states
        self.gated = "gate" in lm.adapter.names
        self.positions: torch.Tensor | None = None
        self._pending: dict[int, dict[str, torch.Tensor]] = {}

    def hooks(self):
        adapter = self.lm.adapter
        handles = []
        for layer in self.states:
            handles.append(down_module(adapter, layer).register_forward_pre_hook(
                lambda _m, args, layer=layer: self._fold(layer, args[0])))
            if self.gated:
                mlp = adapter.layers[layer]
                for view in ("gate", "up"):
                    handles.append(getattr(mlp, adapter.names[view]).register_forward_hook(
                        lambda _m, _a, out, layer=layer, view=view: self._keep(layer, view, out)))
        return handles

    def _keep(self, layer: int, view: str, out: torch.Tensor) -> None:
        self._pending.setdefault(layer, {})[view] = out

    def _fold(self, layer: int, act: torch.Tensor) -> None:
        n = act.shape[-1]
        pending = self._pending.pop(layer, {})
        flat = act.reshape(-1, n).float()
        gate = pending["gate"].reshape(-1, n).float() if self.gated else None
        up = pending["up"].reshape(-1, n).float() if self.gated else None
        self.states[layer].update(flat, gate, up, self.positions)


@torch.inference_mode()
def stream(lm, windows: np.ndarray, start: int, states: dict[int, LayerState], batch: int,
           progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
           on_step: Callable[[int], None] | None = None, step_s: float = 30.0) -> None:
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
class ExamplesResult:
    path: object
    corpus: str
    tokens: int              # corpus tokens the examples cover
    processed: int           # tokens run in this call (0 when everything was cached)
    seconds: float
    complete: bool


def ensure_examples(source, info, load: Callable, tokenizer, corpus, tokens: int = 100_000, per_neuron: int = 20,
                    window: int = 128, batch: int = 8, cache_dir=None, rebuild: bool = False,
                    progress: Callable[[int, int], None] | None = None, note: Callable[[str], None] | None = None,
                    cancel: threading.Event | None = None, commit_s: float = 30.0) -> ExamplesResult:
    """Compute (or resume, or find cached) the examples of every neuron over ``corpus``. The corpus is
    tokenized (``tokenizer``) before anything is written, so a corpus too short for one window costs nothing;
    ``load()`` gives the whole model (a LoadedModel), called only when work remains. The state is committed
    every ``commit_s`` seconds (and when the run ends or is cancelled): what an interruption can lose."""
    from ..cache.catalog import cache_path, decode_lock
    from ..cache.examples import Examples
    from ..cache.store import Store
    from .adapter import token_texts
    from .pipeline import _meta

    note = note or (lambda _msg: None)
    path = cache_path(source.name, source.source, source.fingerprint, cache_dir)
    spec = {"corpus": corpus.name, "corpus_key": corpus.key, "tokens": int(tokens), "window": int(window),
            "per_neuron": int(per_neuron)}
    started = time.perf_counter()

    def result(ex: Examples, processed: int) -> ExamplesResult:
        s = ex.spec
        return ExamplesResult(path, s["corpus"], s["windows"] * s["window"], processed, time.perf_counter() - started,
                              bool(s["complete"]))

    def same(old: dict | None) -> bool:
        return not rebuild and bool(old) and all(old.get(k) == v for k, v in spec.items())

    fresh = None
    if not same(_spec(path)):                 # a new run: tokenize first (a bad corpus writes nothing)
        fresh = _corpus_windows(corpus, tokenizer, tokens, window)
    with decode_lock(path, note):
        store = Store(path)
        try:
            if not store.ready:
                store.initialize(_meta(source, info, 10, None), token_texts(tokenizer, info.shape.vocab))
            ex = Examples(store)
            ex.create()
            old = ex.spec
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
                ex.start(spec, windows_)
                states = {layer: LayerState.empty(n, per_neuron, gated, device)
                          for layer in range(lm.adapter.num_layers)}
                start = 0
            last = [time.perf_counter()]

            def commit(done: int) -> None:
                now = time.perf_counter()
                ex.commit({layer: s.to_numpy() for layer, s in states.items()}, done, now - last[0])
                last[0] = now

            stream(lm, windows_, start, states, batch, progress, cancel, commit, commit_s)
            return result(ex, (len(windows_) - start) * window)
        finally:
            store.close()


def _spec(path) -> dict | None:
    """The examples spec a cache holds (read-only, lock-free), or None."""
    from ..cache.store import Store

    if not path.exists():
        return None
    with Store(path, readonly=True) as store:
        return store.meta.get("examples") if store.ready else None


def _corpus_windows(corpus, tokenizer, tokens: int, window: int) -> np.ndarray:
    from .corpus import windows

    return windows(corpus, tokenizer, tokens, window)
