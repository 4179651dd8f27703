"""The whole model's circuit graph: every neuron's top-k fan-in (per read vector) and fan-out, as layer-pair
matmuls in row chunks with a streamed top-k, so no more than one [chunk, neurons] block of virtual weights
exists at a time.

A unit is one target layer t, taken from the last down to layer 1: it multiplies every earlier layer's down
columns (in chunks of source rows) with t's read rows, folds each block into t's fan-in (top over sources,
complete when the unit ends) and into every source's running fan-out per read vector (top over targets). Taking
targets from
the last layer down, the unit for t completes the fan-out of layer t - 1; the fan-outs still collecting are
committed with the unit as partial rows, so a pass stopped anywhere resumes from its last unit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ...cache.edges import Packed
from ...errors import Cancelled
from . import sieve
from .weights import CircuitWeights

CHUNK_ELEMENTS = 1 << 24  # virtual weights per block (64 MB in float32)

Commit = Callable[..., None]  # cache.edges.Edges.commit


@dataclass
class Top:
    """A running top-k by |weight| per row: signed weights, global ids, via indices, [rows, k] each."""

    weights: torch.Tensor
    ids: torch.Tensor
    vias: torch.Tensor

    @classmethod
    def empty(cls, rows: int, device) -> "Top":
        return cls(
            torch.zeros(rows, 0, device=device),
            torch.zeros(rows, 0, dtype=torch.int64, device=device),
            torch.zeros(rows, 0, dtype=torch.int64, device=device),
        )

    @classmethod
    def of(cls, p: Packed, device) -> "Top":
        return cls(
            torch.from_numpy(p.weights.copy()).to(device),
            torch.from_numpy(p.ids.astype("int64")).to(device),
            torch.from_numpy(p.vias.astype("int64")).to(device),
        )

    def merge(self, weights: torch.Tensor, ids: torch.Tensor, vias: torch.Tensor, k: int, rows=slice(None)) -> None:
        """Fold candidates ([r, c] each, for ``rows`` of this top) in, keeping the k largest |weight|."""
        w = torch.cat([self.weights[rows], weights.to(self.weights.dtype)], dim=1)
        i = torch.cat([self.ids[rows], ids], dim=1)
        v = torch.cat([self.vias[rows], vias], dim=1)
        keep = w.abs().topk(min(k, w.shape[1]), dim=1, sorted=False).indices
        self._set(rows, w.gather(1, keep), i.gather(1, keep), v.gather(1, keep))

    def floor(self, k: int, rows=slice(None)) -> torch.Tensor | None:
        """Each row's k-th best |weight| held (rows are kept unsorted until packed); None while it holds fewer."""
        held = self.weights[rows]
        return held.abs().amin(1) if held.shape[1] >= k else None

    def take(
        self, r: torch.Tensor, c: torch.Tensor, found: torch.Tensor, via: int, k: int, n_cand: int, rows=slice(None)
    ) -> None:
        """Fold candidates in: entry j is a candidate of row ``r[j]`` of ``rows`` (``r`` ordered), with id
        ``c[j]`` and signed weight ``found[j]``, from a block of ``n_cand`` candidates per row that holds every
        entry at or above the row's floor (core.circuits.sieve): the same top as ``merge`` of the whole block."""
        held = self.weights[rows]
        width = min(k, held.shape[1] + min(k, n_cand))
        if r.numel() == 0:
            return
        counts = torch.bincount(r, minlength=held.shape[0])
        pos = torch.arange(r.numel(), device=r.device) - (counts.cumsum(0) - counts)[r]
        wide = (held.shape[0], int(counts.max()))
        cand_w = torch.zeros(wide, dtype=self.weights.dtype, device=r.device)
        cand_w[r, pos] = found.to(self.weights.dtype)
        cand_mag = torch.full(wide, -1.0, dtype=self.weights.dtype, device=r.device)
        cand_mag[r, pos] = cand_w[r, pos].abs()
        cand_i = torch.full(wide, -1, dtype=torch.int64, device=r.device)
        cand_i[r, pos] = c
        keep = torch.cat([held.abs(), cand_mag], dim=1).topk(width, dim=1, sorted=False).indices
        w = torch.cat([held, cand_w], dim=1).gather(1, keep)
        i = torch.cat([self.ids[rows], cand_i], dim=1).gather(1, keep)
        v = torch.cat([self.vias[rows], torch.full(wide, via, dtype=torch.int64, device=r.device)], 1).gather(1, keep)
        self._set(rows, w, i, v)

    def _set(self, rows, w: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> None:
        if isinstance(rows, slice) and rows == slice(None):
            self.weights, self.ids, self.vias = w, i, v
        else:
            if self.weights.shape[1] != w.shape[1]:
                self._widen(w.shape[1])
            self.weights[rows], self.ids[rows], self.vias[rows] = w, i, v

    def _widen(self, k: int) -> None:
        pad = k - self.weights.shape[1]
        rows, dev = self.weights.shape[0], self.weights.device
        self.weights = torch.cat([self.weights, torch.zeros(rows, pad, device=dev, dtype=self.weights.dtype)], 1)
        self.ids = torch.cat([self.ids, torch.full((rows, pad), -1, device=dev, dtype=torch.int64)], 1)
        self.vias = torch.cat([self.vias, torch.zeros(rows, pad, device=dev, dtype=torch.int64)], 1)

    def packed(self) -> Packed:
        """The rows as stored: each sorted by |weight|, highest first."""
        order = self.weights.abs().argsort(dim=1, descending=True, stable=True)
        return Packed(
            self.ids.gather(1, order).cpu().numpy().astype("int32"),
            self.vias.gather(1, order).cpu().numpy().astype("int8"),
            self.weights.gather(1, order).float().cpu().numpy(),
        )


class GraphPass:
    """The all-pairs pass over one model's weights (``cw``), keeping ``top`` edges per neuron."""

    def __init__(
        self,
        cw: CircuitWeights,
        top: int,
        chunk_elements: int = CHUNK_ELEMENTS,
        tokens: bool = True,
        owns: Callable[[int], bool] | None = None,
    ):
        """``owns(layer)``: whether this process computes that source layer's rows (its fan-out, its share of
        every fan-in) and its token tops; the others' are left to other ranks (core.circuits.distributed)."""
        self.cw, self.top, self.device, self.with_tokens = cw, top, cw.device, tokens
        self.owns = owns or (lambda _layer: True)
        self.neurons = cw.adapter.neurons
        self.rows = max(1, chunk_elements // self.neurons)
        self._stack: torch.Tensor | None = None
        self._embedding: torch.Tensor | None = None
        self._buffer: torch.Tensor | None = None
        self._scratch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def units(self) -> list[int]:
        """Target layers in the order they are done (the last first; layer 0 reads no earlier neuron)."""
        return list(range(self.cw.layers - 1, 0, -1))

    def stack(self) -> torch.Tensor:
        """Every layer's down columns, stacked [layers * neurons, hidden]: row s * n + i is neuron i of layer s,
        so a block of rows spans layers and its row index is the source's global id. Read once per pass."""
        if self._stack is None:
            self._stack = torch.cat([self.cw.writes(layer) for layer in range(self.cw.layers)])
        return self._stack

    def buffer(self) -> torch.Tensor:
        """The one [rows, neurons] block every matmul of the pass writes into (fresh blocks cost page faults)."""
        if self._buffer is None:
            self._buffer = torch.empty(self.rows, self.neurons, dtype=self.cw.dtype, device=self.device)
        return self._buffer

    def scratch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The sieve's |w| and two mask buffers, one block each, reused like the block."""
        if self._scratch is None:
            shape = (self.rows, self.neurons)
            self._scratch = (
                torch.empty(shape, dtype=self.cw.dtype, device=self.device),
                torch.empty(shape, dtype=torch.bool, device=self.device),
                torch.empty(shape, dtype=torch.bool, device=self.device),
            )
        return self._scratch

    def writes(self, layer: int) -> torch.Tensor:
        n = self.neurons
        return self.stack()[layer * n : (layer + 1) * n]

    def chunks(self, t: int) -> list[tuple[int, int]]:
        """The row blocks [a, b) of the sources of target layer ``t`` (every neuron of layers 0..t-1) that this
        process owns."""
        return [(a, b) for a, b, owned in self.spans(t) if owned]

    def spans(self, t: int) -> list[tuple[int, int, bool]]:
        """Every source row of target layer ``t`` once, in order, as blocks [a, b) of at most ``rows`` rows, each
        within a run of layers this process owns or does not."""
        n, out, layer = self.neurons, [], 0
        while layer < t:
            owned, end = self.owns(layer), layer + 1
            while end < t and self.owns(end) == owned:
                end += 1
            step = self.rows if owned else (end - layer) * n
            out += [(a, min(a + step, end * n), owned) for a in range(layer * n, end * n, step)]
            layer = end
        return out

    def _collecting(self, t: int, partial: dict[tuple[int, str], Packed]) -> dict[str, Top]:
        """Per read vector, the fan-outs of layers 0..t-1 still collecting (one Top over their rows), from the
        stored ``partial`` rows: every such layer has seen the same targets, so they share one width."""
        outs = {}
        for via in self.cw.reads:
            held = [partial.get((s, via)) for s in range(t)]
            if all(p is None for p in held):
                outs[via] = Top.empty(t * self.neurons, self.device)
                continue
            if any(p is None for p in held) or len({p.weights.shape[1] for p in held if p is not None}) != 1:
                raise RuntimeError("the stored partial fan-outs do not fit together: rebuild the graph")
            tops = [Top.of(p, self.device) for p in held if p is not None]
            outs[via] = Top(*(torch.cat([getattr(o, f) for o in tops]) for f in ("weights", "ids", "vias")))
        return outs

    def _rows(self, top: Top, a: int, b: int) -> Top:
        return Top(top.weights[a:b], top.ids[a:b], top.vias[a:b])

    def run(
        self,
        done: set[int],
        partial: dict[tuple[int, str], Packed],
        commit: Commit,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Do the units not in ``done``, starting from the stored ``partial`` fan-outs; ``commit`` each."""
        units, reads, n = self.units, self.cw.reads, self.neurons
        finished = sum(u in done for u in units)
        if progress is not None:
            progress(finished, len(units))
        todo = [t for t in units if t not in done]
        if todo and done and min(done) != todo[0] + 1:
            raise RuntimeError("the stored graph's finished layers are not a run from the last: rebuild the graph")
        outs = self._collecting(todo[0], partial) if todo else {}
        for t in todo:
            started = time.perf_counter()
            fan_in = self.unit(t, outs, cancel)
            owned = [s for s in range(t - 1) if self.owns(s)]
            fan_out = {(t - 1, via): self._rows(outs[via], (t - 1) * n, t * n).packed() for via in reads}
            fan_out = fan_out if self.owns(t - 1) else {}
            outs = {via: self._rows(o, 0, (t - 1) * n) for via, o in outs.items()}
            if t == self.cw.layers - 1 and self.owns(t):  # the last layer feeds no neuron
                fan_out.update({(t, via): Top.empty(n, self.device).packed() for via in reads})
            tokens = {}
            for layer in ((t, 0) if t == 1 else (t,)) if self.with_tokens else ():
                if self.owns(layer):
                    tokens.update({(layer, via): top.packed() for via, top in self.tokens(layer, cancel).items()})
            commit(
                t,
                {via: top.packed() for via, top in fan_in.items()},
                fan_out,
                {(s, via): self._rows(o, s * n, (s + 1) * n).packed() for via, o in outs.items() for s in owned},
                time.perf_counter() - started,
                tokens,
            )
            finished += 1
            if progress is not None:
                progress(finished, len(units))

    def unit(self, t: int, outs: dict[str, Top], cancel: threading.Event | None) -> dict[str, Top]:
        """Target layer ``t``: its fan-in per read vector, folding each block into ``outs`` (the fan-outs of
        layers 0..t-1, one Top per read vector over their rows) as well."""
        n, k, stack = self.neurons, self.top, self.stack()
        fan_in = {}
        for vi, via in enumerate(self.cw.reads):
            rows = self.cw.read_rows(t, via).T.contiguous()  # [hidden, n]
            into, pieces = Top.empty(n, self.device), []
            for a, b, owned in self.spans(t):
                piece = self._rows(outs[via], a, b)
                pieces.append(piece)
                if not owned:  # another rank's rows: kept as they are
                    continue
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                block = torch.matmul(stack[a:b], rows, out=self.buffer()[: b - a])  # [c, n]: sources a..b-1 into t
                (fr, fc, fv), (ir, ic, iv) = sieve.both(block, piece.floor(k), into.floor(k), k, self.scratch())
                piece.take(fr, fc + t * n, fv, vi, k, n)
                into.take(ic, ir + a, iv, vi, k, b - a)
            fan_in[via] = into
            width = max(p.weights.shape[1] for p in pieces)
            for p in pieces:  # another rank's rows are never folded here: padded to the width, never reported
                if p.weights.shape[1] < width:
                    p._widen(width)
            outs[via] = Top(*(torch.cat([getattr(p, f) for p in pieces]) for f in ("weights", "ids", "vias")))
        return fan_in

    def tokens(self, layer: int, cancel: threading.Event | None) -> dict[str, Top]:
        """Each read vector's top embedding rows by |E[t] · (g ⊙ r_j)|, per neuron of ``layer``."""
        if self._embedding is None:
            self._embedding = self.cw.embedding()
        embed, n = self._embedding, self.neurons
        out = {}
        for vi, via in enumerate(self.cw.reads):
            rows = self.cw.read_rows(layer, via).T.contiguous()
            top = out[via] = Top.empty(n, self.device)
            for a in range(0, embed.shape[0], self.rows):
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                block = embed[a : a + self.rows] @ rows  # [c, n] token scores
                best = block.abs().topk(min(self.top, block.shape[0]), dim=0).indices
                top.merge(block.gather(0, best).T, (best + a).T, torch.full_like(best.T, vi), self.top)
        return out
