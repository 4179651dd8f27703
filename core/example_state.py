"""The running top-N of the examples engine (core.examples): per layer, every neuron's best activations of
each sign, with their positions and GLU case codes, kept on the model's device. A batch's candidates are
picked out with one comparison and merged in bulk (a segmented sort), or by a dense sort when a batch
brings many; both keep one total order (value descending, position ascending).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .activations import case_codes

BUFFER = 1 << 16  # candidates held back before a merge (amortises its fixed costs over batches)


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
        return cls(
            torch.full((2, per_neuron, n), -torch.inf, device=device),
            torch.full((2, per_neuron, n), -1, dtype=torch.int64, device=device),
            torch.zeros((2, per_neuron, n), dtype=torch.int8, device=device),
            torch.zeros((4, n), dtype=torch.int64, device=device) if gated else None,
            torch.zeros(n, dtype=torch.int64, device=device),
        )

    def to_numpy(self) -> dict[str, np.ndarray | None]:
        self.flush()
        out: dict[str, np.ndarray | None] = {
            "vals": self.vals.cpu().numpy(),
            "pos": self.pos.cpu().numpy(),
            "case": self.case.cpu().numpy(),
            "positive": self.positive.cpu().numpy(),
        }
        out["cases"] = None if self.cases is None else self.cases.cpu().numpy()
        return out

    @classmethod
    def from_numpy(cls, arrays: dict, device) -> "LayerState":
        def t(a, dtype=None):
            return torch.from_numpy(np.array(a, copy=True)).to(device=device, dtype=dtype)

        return cls(
            t(arrays["vals"], torch.float32),
            t(arrays["pos"], torch.int64),
            t(arrays["case"], torch.int8),
            None if arrays["cases"] is None else t(arrays["cases"], torch.int64),
            t(arrays["positive"], torch.int64),
        )

    def update(
        self,
        act: torch.Tensor,
        gate: torch.Tensor | None,
        up: torch.Tensor | None,
        positions: torch.Tensor,
        dense: bool = False,
    ) -> None:
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
            assert self.cases is not None  # a gated layer's state counts its cases (empty(gated=True))
            gate = gate if gate.dtype == torch.bool else gate > 0  # the merges need only the signs
            g = _count(gate)
            if up is None:  # up > 0 is positive == gate: its count follows from three
                both = _count(gate & positive)
                u = rows - g - count + 2 * both
            else:
                up = up if up.dtype == torch.bool else up > 0
                u, both = _count(up), _count(gate & up)
            self.cases += torch.stack([both, g - both, u - both, rows - g - u + both])
        self.positive += count
        low, high = self.vals[0, -1], -self.vals[1, -1]  # -act > t is act < -t exactly
        r, c = ((act > low) | (act < high)).nonzero(as_tuple=True)  # candidates of either sign, one pass
        if r.numel() == 0:
            return
        values = act[r, c]
        for sign, picked in enumerate((values > low[c], values < high[c])):
            total = int(picked.sum())
            if total == 0:
                continue
            if dense or total * 16 > rows * n:  # (NaN is never an example: as -inf it ranks last, and it
                self.flush()  # is never a candidate of the fast path either)
                signed = act if sign == 0 else -act
                self.merge_dense(sign, signed.masked_fill(signed.isnan(), -torch.inf), gate, up, positions)
                continue
            rs, cs, vs = r[picked], c[picked], values[picked]
            codes = (
                torch.zeros_like(cs, dtype=torch.int8)
                if gate is None
                else case_codes(gate[rs, cs], (vs > 0) == gate[rs, cs] if up is None else up[rs, cs])
            )
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
        v, r = stable_top(signed, per)  # [k, n]
        if gate is None:
            codes = torch.zeros_like(r, dtype=torch.int8)
        else:
            g = gate.gather(0, r)
            codes = case_codes(g, ((v > 0) if sign == 0 else (v < 0)) == g if up is None else up.gather(0, r))
        all_v = torch.cat([self.vals[sign], v])
        all_p = torch.cat([self.pos[sign], positions[r]])
        by_pos = all_p.sort(dim=0, stable=True).indices  # ties: earlier position first
        keep = by_pos.gather(0, all_v.gather(0, by_pos).sort(dim=0, descending=True, stable=True).indices)[:per]
        self.vals[sign] = all_v.gather(0, keep)
        self.pos[sign] = all_p.gather(0, keep)
        self.case[sign] = torch.cat([self.case[sign], codes]).gather(0, keep)

    def merge_candidates(self, sign: int, values, c, positions, codes) -> None:
        """Merge candidate entries (value, neuron, position, case code) into one sign's top-N."""
        per = self.vals.shape[1]
        cols = torch.unique(c)  # the neurons touched
        old = torch.arange(per, device=c.device).repeat_interleave(cols.numel())  # rank of each old entry
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
    best, r = x.topk(k, dim=0)  # NaN ranks first in both, and compares unequal
    if bool(best[0].isnan().any()):  # NaN (the engine maps it to -inf first): the full sort
        v, r = x.sort(dim=0, descending=True, stable=True)
        return v[:k], r[:k]
    kth = best[-1]
    tied = ((x >= kth).sum(0) != k).nonzero()[:, 0]  # columns with a tie at their k-th value take the
    if tied.numel():  # earliest tied rows
        xs, kt = x[:, tied], kth[tied]
        above, equal = xs > kt, xs == kt
        take = above | (equal & (equal.cumsum(0) <= k - above.sum(0)))
        r[:, tied] = take.t().nonzero()[:, 1].view(-1, k).t()
    r = r.sort(dim=0).values  # row order, so the stable sort below breaks ties by row
    v, order = x.gather(0, r).sort(dim=0, descending=True, stable=True)
    return v, r.gather(0, order)
