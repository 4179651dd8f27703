"""Top-k of softmax(lm_head(x)) for chunks of normalised vectors: the classic torch passes and the
blockwise scorer (block statistics from core.decode.kernels or their torch twins), both ending in the same exact
float32 rescoring of a small candidate set."""

from __future__ import annotations

from typing import Callable

import torch

from .head import Head
from .kernels import BLOCK

MAX_HALF_RANGE = 80.0  # exp(80) and exp(-80) are both safe in float32
HEAD_SLICE = 8192  # vocabulary rows per bf16 matmul


def _block_candidates(f: torch.Tensor, blk: torch.Tensor | None, kc: int, largest: bool) -> torch.Tensor:
    """Column indices [R, kc] that hold each row's top-kc (largest or smallest) values of f [R, V]."""
    rows, vocab = f.shape
    main = 0 if blk is None else blk.shape[1] * BLOCK
    parts = []
    if blk is not None and main:
        kb = min(kc, blk.shape[1])
        bidx = blk.topk(kb, dim=1, largest=largest).indices
        offs = torch.arange(BLOCK, device=f.device)
        parts.append((bidx.unsqueeze(-1) * BLOCK + offs).reshape(rows, -1))
    if main < vocab:
        parts.append(torch.arange(main, vocab, device=f.device).expand(rows, -1))
    cols = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    sel = f.gather(1, cols).topk(min(kc, cols.shape[1]), dim=1, largest=largest).indices
    return cols.gather(1, sel)


class Scorer:
    """Top-k of softmax(lm_head(x)) for chunks of normalised vectors x."""

    def __init__(self, head: Head, top_k: int, stats: Callable | None = None):
        self.head = head
        # blockwise scoring (the GPU path): per-64-token-block max/min/partial sums from one pass over the
        # logits (core.decode.kernels.block_stats or its torch twin); only for heads without bias or soft-capping
        self.stats = stats if head.blockwise_ok else None
        self.k = min(top_k, head.vocab)
        # bf16 rounding can reorder near-ties, so take a margin of candidates for the exact rescoring.
        exact = head.mm_dtype == torch.float32
        self.kc = min(head.vocab, self.k if exact else 2 * self.k + 16)
        self._buffers: dict[str, torch.Tensor] = {}

    def _buffer(
        self, name: str, rows: int, dtype: torch.dtype, device: torch.device, width: int | None = None
    ) -> torch.Tensor:
        """Reused logits buffers: a fresh multi-MB allocation per chunk costs page faults on CPU."""
        width = width or self.head.vocab
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != width or buf.dtype != dtype or buf.device != device:
            self._buffers.pop(name, None)
            del buf  # free the old buffer before allocating its replacement
            buf = self._buffers[name] = torch.empty((rows, width), dtype=dtype, device=device)
        return buf[:rows]

    def release(self) -> None:
        self._buffers.clear()

    def score(self, x: torch.Tensor, both: bool):
        """x: [R, H] float32 normalised vectors. Returns [(ids, probs) for pos] (+ neg when ``both``)."""
        if self.stats is not None:
            return self._score_blockwise(x, both, self.stats)
        h = self.head
        rows = x.shape[0]
        f = self._buffer("f", rows, torch.float32, x.device)
        if h.mm_dtype == torch.float32:
            torch.mm(x, h.w_mm.t(), out=f)
        else:
            # a slice of the vocabulary at a time: the bf16 product (and the matmul library's packed copy
            # of the head) stay small, and each slice is widened into the float32 buffer as it comes
            xb = x.to(h.mm_dtype)
            y = self._buffer("y", rows, h.mm_dtype, x.device, min(HEAD_SLICE, h.vocab))
            for v in range(0, h.vocab, HEAD_SLICE):
                w = h.w_mm[v : v + HEAD_SLICE]
                part = y[:, : w.shape[0]]
                torch.mm(xb, w.t(), out=part)
                f[:, v : v + w.shape[0]].copy_(part)
        if h.bias is not None:
            f.add_(h.bias)
        if h.softcap is not None:
            f.div_(h.softcap).tanh_().mul_(h.softcap)
        nb = h.vocab // BLOCK
        blocks = f[:, : nb * BLOCK].view(rows, nb, BLOCK) if nb else None
        bmax = blocks.amax(-1) if blocks is not None else None
        rmax = _row_extreme(f, bmax, nb, True)
        cand = [_block_candidates(f, bmax, self.kc, True)]
        if both:
            bmin = blocks.amin(-1) if blocks is not None else None
            rmin = _row_extreme(f, bmin, nb, False)
            cand.append(_block_candidates(f, bmin, self.kc, False))
            centre = (rmax + rmin) / 2
        else:
            centre = rmax
        approx = [f.gather(1, c) for c in cand]
        if both and float((rmax - rmin).max()) / 2 > MAX_HALF_RANGE:
            # too wide for one centre: one exp pass per direction, each centred on its own maximum
            e = self._buffer("e", rows, torch.float32, x.device)
            torch.sub(f, rmax.unsqueeze(1), out=e)
            # (clamped above float32's denormal range, where exp is slow and the terms are negligible)
            s_pos = e.clamp_(min=-87.0).exp_().sum(1).double() * torch.exp((rmax - centre).double())
            torch.sub(rmin.unsqueeze(1), f, out=e)
            s_neg = e.clamp_(min=-87.0).exp_().sum(1).double() * torch.exp((centre - rmin).double())
            sums = [s_pos, s_neg]
        else:
            f.sub_(centre.unsqueeze(1)).exp_()
            sums = [f.sum(1).double()]
            if both:
                sums.append(f.reciprocal_().sum(1).double())
        return self._finish(x, cand, approx, sums, [centre, -centre])

    def _score_blockwise(self, x: torch.Tensor, both: bool, stats: Callable):
        """One matmul into a logits buffer in the matmul dtype, one pass for the block statistics, then
        candidates from the block maxima/minima and the same exact rescoring as the torch path."""
        h = self.head
        rows = x.shape[0]
        y = self._buffer("y", rows, h.mm_dtype, x.device)
        torch.mm(x.to(h.mm_dtype), h.w_mm.t(), out=y)
        bmax, bmin, spos, sneg = stats(y)
        full = h.vocab // BLOCK  # the candidate search takes a partial last block as loose columns
        rmax = bmax.amax(1)
        cand = [_block_candidates(y, bmax[:, :full] if full else None, self.kc, True)]
        sums = [(spos * torch.exp(bmax - rmax.unsqueeze(1))).sum(1, dtype=torch.float64)]
        centres = [rmax]
        if both:
            rmin = bmin.amin(1)
            cand.append(_block_candidates(y, bmin[:, :full] if full else None, self.kc, False))
            sums.append((sneg * torch.exp(rmin.unsqueeze(1) - bmin)).sum(1, dtype=torch.float64))
            centres.append(-rmin)
        approx = [y.gather(1, c).float() for c in cand]
        return self._finish(x, cand, approx, sums, centres)

    def _finish(self, x, cand, approx, sums, centres):
        """Per direction: swap the candidates' approximate terms in the softmax sum for exact ones and
        return (ids, probs) of the top-k. ``sums[d]`` is relative to ``centres[d]``, in direction d's
        logits (the neg direction's logits are minus the pos ones)."""
        results = []
        for d in range(len(cand)):
            sign = 1.0 if d == 0 else -1.0
            exact = self.head.logits_exact(x, cand[d]) * sign  # this direction's logits at candidates
            approx_d = approx[d] * sign
            c = centres[d]
            total = (
                sums[d]
                - torch.exp((approx_d - c.unsqueeze(1)).double()).sum(1)
                + torch.exp((exact - c.unsqueeze(1)).double()).sum(1)
            )
            lse = torch.log(total.clamp_min(1e-300)) + c.double()
            vals, order = exact.topk(self.k, dim=1)
            ids = cand[d].gather(1, order)
            probs = torch.exp(vals.double() - lse.unsqueeze(1)).float()
            results.append((ids, probs))
        return results


def _row_extreme(f: torch.Tensor, blk: torch.Tensor | None, nb: int, largest: bool) -> torch.Tensor:
    parts = []
    if blk is not None:
        parts.append(blk.amax(1) if largest else blk.amin(1))
    if nb * BLOCK < f.shape[1]:
        tail = f[:, nb * BLOCK :]
        parts.append(tail.amax(1) if largest else tail.amin(1))
    out = parts[0]
    for p in parts[1:]:
        out = torch.maximum(out, p) if largest else torch.minimum(out, p)
    return out
