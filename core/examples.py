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
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..choices import DEFAULT_TOP_K
from ..errors import Cancelled
from .activations import case_codes
from .clamp import FORWARD_LOCK, down_module
from .corpus import Corpus

BUFFER = 1 << 16        # candidates held back before a merge (amortises its fixed costs over batches)


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Per column, how many rows of a boolean [rows, n] are true (summed as bytes: several times faster
    than a boolean sum)."""
    return mask.view(torch.uint8).sum(0, dtype=torch.int32)


@dataclass
class LayerState:
    """One layer's running results, on the device. vals/pos/case: [2 signs, N, n], each neuron's column sorted
    best first; cases [4, n]; positive [n]. Candidates that beat a column's N-th best wait in a buffer and are
    merged in bulk (``flush``; every read of the state flushes first)."""

    vals: torch.Tensor
    pos: torch.Tensor
    case: torch.Tensor
    cases: torch.Tensor | None
    positive: torch.Tensor
    buffer: list = field(default_factory=list)
    buffered: int = 0

    @classmethod
    def empty(cls, n: int, per_neuron: int, gated: bool, device) -> "LayerState":
        return cls(torch.full((2, per_neuron, n), -torch.inf, device=device),
                   torch.full((2, per_neuron, n), -1, dtype=torch.int64, device=device),
                   torch.zeros((2, per_neuron, n), dtype=torch.int8, device=device),
                   torch.zeros((4, n), dtype=torch.int64, device=device) if gated else None,
                   torch.zeros(n, dtype=torch.int64, device=device))

    def to_numpy(self) -> dict[str, np.ndarray | None]:
        self.flush()
        out: dict[str, np.ndarray | None] = {
            "vals": self.vals.cpu().numpy(), "pos": self.pos.cpu().numpy(), "case": self.case.cpu().numpy(),
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
               positions: torch.Tensor, dense: bool = False) -> None:
        """Fold in one batch: act [rows, n] float32; gate/up [rows, n] pre-activations or booleans (> 0),
        or gate alone with up None when act = f(gate) * up for an f that keeps signs (then up > 0 exactly
        when (act > 0) == (gate > 0)); positions [rows] int64 (global token indices).

        Only entries above a neuron's current N-th best can enter its top-N. Once the first batches have set
        those thresholds, a batch brings a few per neuron: they are picked out with one comparison, held in a
        buffer and merged in bulk by a segmented sort. A batch that brings many (the first ones) takes the
        dense sort (``merge_dense``). Both keep the same total order, value descending then position
        ascending, so the result never depends on when merges happen. Case counts come from three byte
        sums."""
        rows, n = act.shape
        positive = act > 0
        count = _count(positive)
        if gate is not None:
            assert self.cases is not None          # a gated layer's state counts its cases (empty(gated=True))
            gate = gate if gate.dtype == torch.bool else gate > 0       # the merges need only the signs
            g = _count(gate)
            if up is None:                         # up > 0 is positive == gate: its count follows from three
                both = _count(gate & positive)
                u = rows - g - count + 2 * both
            else:
                up = up if up.dtype == torch.bool else up > 0
                u, both = _count(up), _count(gate & up)
            self.cases += torch.stack([both, g - both, u - both, rows - g - u + both])
        self.positive += count
        low, high = self.vals[0, -1], -self.vals[1, -1]               # -act > t is act < -t exactly
        r, c = ((act > low) | (act < high)).nonzero(as_tuple=True)     # candidates of either sign, one pass
        if r.numel() == 0:
            return
        values = act[r, c]
        for sign, picked in enumerate((values > low[c], values < high[c])):
            total = int(picked.sum())
            if total == 0:
                continue
            if dense or total * 16 > rows * n:     # (NaN is never an example: as -inf it ranks last, and it
                self.flush()                       # is never a candidate of the fast path either)
                signed = act if sign == 0 else -act
                self.merge_dense(sign, signed.masked_fill(signed.isnan(), -torch.inf), gate, up, positions)
                continue
            rs, cs, vs = r[picked], c[picked], values[picked]
            codes = (torch.zeros_like(cs, dtype=torch.int8) if gate is None else
                     case_codes(gate[rs, cs], (vs > 0) == gate[rs, cs] if up is None else up[rs, cs]))
            self.buffer.append((sign, vs if sign == 0 else -vs, cs, positions[rs], codes))
            self.buffered += total
        if self.buffered > BUFFER:
            self.flush()

    def flush(self) -> None:
        for sign in (0, 1):
            parts = [b for b in self.buffer if b[0] == sign]
            if parts:
                self.merge_candidates(sign, *(torch.cat([p[i] for p in parts]) for i in range(1, 5)))
        self.buffer, self.buffered = [], 0

    def merge_dense(self, sign: int, signed, gate, up, positions) -> None:
        """The whole batch, column by column. Rows come in position order, so a stable sort ranks equal
        activations by position: the same total order as merge_candidates."""
        per = self.vals.shape[1]
        v, r = stable_top(signed, per)                                               # [k, n]
        if gate is None:
            codes = torch.zeros_like(r, dtype=torch.int8)
        else:
            g = gate.gather(0, r)
            codes = case_codes(g, ((v > 0) if sign == 0 else (v < 0)) == g if up is None else up.gather(0, r))
        all_v = torch.cat([self.vals[sign], v])
        all_p = torch.cat([self.pos[sign], positions[r]])
        by_pos = all_p.sort(dim=0, stable=True).indices                              # ties: earlier position first
        keep = by_pos.gather(0, all_v.gather(0, by_pos).sort(dim=0, descending=True, stable=True).indices)[:per]
        self.vals[sign] = all_v.gather(0, keep)
        self.pos[sign] = all_p.gather(0, keep)
        self.case[sign] = torch.cat([self.case[sign], codes]).gather(0, keep)

    def merge_candidates(self, sign: int, values, c, positions, codes) -> None:
        """Merge candidate entries (value, neuron, position, case code) into one sign's top-N."""
        per = self.vals.shape[1]
        cols = torch.unique(c)                                                       # the neurons touched
        old = torch.arange(per, device=c.device).repeat_interleave(cols.numel())    # rank of each old entry
        old_cols = cols.repeat(per)
        values = torch.cat([self.vals[sign][old, old_cols], values])
        where = torch.cat([old_cols, c])
        at = torch.cat([self.pos[sign][old, old_cols], positions])
        code = torch.cat([self.case[sign][old, old_cols], codes])
        # sorted by (neuron, value descending, position): three stable sorts, the last key first. Exact for
        # every value, +-inf included (NaN never gets here); empty slots (-inf) sort last
        by_pos = torch.argsort(at, stable=True)
        by_value = by_pos[torch.argsort(values[by_pos], descending=True, stable=True)]
        order = by_value[torch.argsort(where[by_value], stable=True)]
        where = where[order]
        first = torch.searchsorted(where, where, right=False)
        rank = torch.arange(where.numel(), device=where.device) - first
        keep = rank < per
        rank, where, order = rank[keep], where[keep], order[keep]
        self.vals[sign][rank, where] = values[order]
        self.pos[sign][rank, where] = at[order]
        self.case[sign][rank, where] = code[order]


def stable_top(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k rows of ``x.sort(dim=0, descending=True, stable=True)`` (values, row indices) for x
    [rows, n], by a top-k instead of a full sort (several times faster). When no column has a tie at its
    k-th largest value, top-k's set is the sort's; else each such column takes the earliest tied rows."""
    rows, n = x.shape
    k = min(k, rows)
    best, r = x.topk(k, dim=0)                        # NaN ranks first in both, and compares unequal
    if bool(best[0].isnan().any()):                   # NaN (the engine maps it to -inf first): the full sort
        v, r = x.sort(dim=0, descending=True, stable=True)
        return v[:k], r[:k]
    kth = best[-1]
    tied = ((x >= kth).sum(0) != k).nonzero()[:, 0]   # columns with a tie at their k-th value take the
    if tied.numel():                                  # earliest tied rows
        xs, kt = x[:, tied], kth[tied]
        above, equal = xs > kt, xs == kt
        take = above | (equal & (equal.cumsum(0) <= k - above.sum(0)))
        r[:, tied] = take.t().nonzero()[:, 1].view(-1, k).t()
    r = r.sort(dim=0).values                          # row order, so the stable sort below breaks ties by row
    v, order = x.gather(0, r).sort(dim=0, descending=True, stable=True)
    return v, r.gather(0, order)


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
            handles.append(down_module(adapter, layer).register_forward_pre_hook(
                lambda _m, args, layer=layer: self._fold(layer, args[0])))
            if not self.gated:
                continue
            mlp = adapter.layers[layer]
            fn = getattr(mlp, "act_fn", None)
            if _sign_preserving(fn) and all(getattr(adapter.layers[other], "act_fn", None) is not fn
                                            for other in self.states if other != layer):
                handles.append(fn.register_forward_hook(
                    lambda _m, _a, out, layer=layer: self._keep(layer, "gate_sign", out)))
                continue
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
        gate = up = None
        if "gate_sign" in pending:                 # act = f(gate) * up with sign(f(gate)) == sign(gate):
            gate = pending["gate_sign"].reshape(-1, n) > 0          # up's sign follows (update derives it)
        elif self.gated:
            gate, up = pending["gate"].reshape(-1, n).float(), pending["up"].reshape(-1, n).float()
        assert self.positions is not None          # stream() sets them before every forward pass
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
        return {"corpus": self.corpus.name, "corpus_key": self.corpus.key, "tokens": int(self.tokens),
                "window": int(self.window), "per_neuron": int(self.per_neuron)}


@dataclass
class ExamplesResult:
    path: object
    corpus: str
    tokens: int              # corpus tokens the examples cover
    processed: int           # tokens run in this call (0 when everything was cached)
    seconds: float
    complete: bool
    source: dict | None = None      # what the corpus is (core.corpus.Corpus.source: kind, path, column, …)


def ensure_examples(source, info, recipe: ExamplesRecipe, load: Callable, tokenizer, *, cache_dir=None,
                    rebuild: bool = False, progress: Callable[[int, int], None] | None = None,
                    note: Callable[[str], None] | None = None, cancel: threading.Event | None = None) -> ExamplesResult:
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
        return ExamplesResult(path, s["corpus"], s["windows"] * s["window"], processed, time.perf_counter() - started,
                              bool(s["complete"]), s.get("corpus_source") or corpus.source)

    def same(old: dict | None) -> bool:
        return bool(not rebuild and old and all(old.get(k) == v for k, v in spec.items()))

    fresh = None
    if not same(stored_spec(path)):                 # a new run: tokenize first (a bad corpus writes nothing)
        fresh = _corpus_windows(corpus, tokenizer, tokens, window)
    with decode_lock(path, note):
        store = Store(path)
        try:
            if not store.ready:
                store.initialize(cache_meta(source, info, DEFAULT_TOP_K, None),
                                 token_texts(tokenizer, info.shape.vocab))
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
                ex.start({**spec, "corpus_source": corpus.source}, windows_)     # recorded, not compared
                states = {layer: LayerState.empty(n, recipe.per_neuron, gated, device)
                          for layer in range(lm.adapter.num_layers)}
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
