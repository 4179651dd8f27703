"""Fused GPU passes over the logits (Triton), each with a plain-torch twin that defines what it computes.

On a GPU the bf16 LM-head matmul is so fast that separate elementwise passes over the R x V logits
(widen, max, min, exp, sum, reciprocal, sum: about 40 bytes of memory traffic per logit) would cost as
much again. Two kernels keep the extra traffic near one read of the bf16 logits:

- ``block_stats``: one read of the logits gives, per block of 64 tokens, the max, the min and the two
  softmax partial sums relative to them: sum(exp(y - max)) and sum(exp(min - y)). Every term is <= 1, so
  no range check is needed, and both directions' denominators follow from these [R, V/64] arrays.
- ``gather_dot``: the exact float32 rescoring of the candidates, x[r] . W[cols[r, j]], reading each
  gathered head row once in its stored dtype (no widened copy, no per-step launches).

``fused_ok(device)`` compiles both on the device, checks them against the torch twins on random data and
answers False (the decoder then keeps its torch path) when Triton is missing or anything disagrees. With
TRITON_INTERPRET=1 the kernels run on the CPU, which is how the tests check them.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from functools import lru_cache

import torch

BLOCK = 64  # tokens per block (core.decode uses this one too)
GROUP = 32  # blocks per program of block_stats (a 32 x 64 tile)
HIDDEN_STEP = 128  # hidden dims per step of gather_dot
DOT_COLS = 16  # candidates per program of gather_dot (a 16 x 128 tile: few registers, no spills)


# ---- torch twins (the definitions; also the CPU path of the blockwise scorer) ------------------------------


def block_stats_torch(y: torch.Tensor):
    """(bmax, bmin, spos, sneg), each float32 [R, ceil(V/64)], of logits y [R, V]."""
    rows, vocab = y.shape
    nb = math.ceil(vocab / BLOCK)
    pad = nb * BLOCK - vocab
    yf = y.float()
    hi = torch.nn.functional.pad(yf, (0, pad), value=-math.inf).view(rows, nb, BLOCK)
    bmax = hi.amax(-1)
    spos = torch.exp(hi - bmax.unsqueeze(-1)).sum(-1)
    del hi
    lo = torch.nn.functional.pad(yf, (0, pad), value=math.inf).view(rows, nb, BLOCK)
    bmin = lo.amin(-1)
    sneg = torch.exp(bmin.unsqueeze(-1) - lo).sum(-1)
    return bmax, bmin, spos, sneg


def gather_dot_torch(x: torch.Tensor, w: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """float32 [R, C]: x[r] . w[cols[r, j]] for x float32 [R, H], w [V, H], cols int64 [R, C]."""
    return torch.bmm(w[cols].float(), x.float().unsqueeze(-1)).squeeze(-1)


# ---- Triton kernels ------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _kernels():
    """The jitted kernels, built on first use (so TRITON_INTERPRET set by then is honoured)."""
    import triton
    import triton.language as tl

    @triton.jit
    def stats_kernel(
        y_ptr, stride, vocab, nb, bmax_ptr, bmin_ptr, spos_ptr, sneg_ptr, GROUP_: tl.constexpr, BLOCK_: tl.constexpr
    ):
        row = tl.program_id(0).to(tl.int64)
        blocks = tl.program_id(1) * GROUP_ + tl.arange(0, GROUP_)
        cols = blocks[:, None] * BLOCK_ + tl.arange(0, BLOCK_)[None, :]
        mask = cols < vocab
        y = tl.load(y_ptr + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
        hi = tl.where(mask, y, float("-inf"))
        lo = tl.where(mask, y, float("inf"))
        bmax = tl.max(hi, axis=1)
        bmin = tl.min(lo, axis=1)
        spos = tl.sum(tl.where(mask, tl.exp(y - bmax[:, None]), 0.0), axis=1)
        sneg = tl.sum(tl.where(mask, tl.exp(bmin[:, None] - y), 0.0), axis=1)
        out = row * nb + blocks
        keep = blocks < nb
        tl.store(bmax_ptr + out, bmax, mask=keep)
        tl.store(bmin_ptr + out, bmin, mask=keep)
        tl.store(spos_ptr + out, spos, mask=keep)
        tl.store(sneg_ptr + out, sneg, mask=keep)

    @triton.jit
    def gather_kernel(x_ptr, w_ptr, cols_ptr, out_ptr, hidden, ncols, COLS: tl.constexpr, STEP: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        j = tl.program_id(1) * COLS + tl.arange(0, COLS)
        jmask = j < ncols
        idx = tl.load(cols_ptr + row * ncols + j, mask=jmask, other=0).to(tl.int64)
        acc = tl.zeros((COLS,), dtype=tl.float32)
        for h0 in range(0, hidden, STEP):
            h = h0 + tl.arange(0, STEP)
            hmask = h < hidden
            xv = tl.load(x_ptr + row * hidden + h, mask=hmask, other=0.0)
            wv = tl.load(
                w_ptr + idx[:, None] * hidden + h[None, :], mask=jmask[:, None] & hmask[None, :], other=0.0
            ).to(tl.float32)
            acc += tl.sum(wv * xv[None, :], axis=1)
        tl.store(out_ptr + row * ncols + j, acc, mask=jmask)

    return triton, stats_kernel, gather_kernel


def block_stats(y: torch.Tensor):
    """The Triton twin of block_stats_torch (y may be a row-slice of a wider buffer; its rows contiguous)."""
    triton, stats_kernel, _ = _kernels()
    rows, vocab = y.shape
    if y.stride(1) != 1:
        y = y.contiguous()
    nb = math.ceil(vocab / BLOCK)
    out = [torch.empty((rows, nb), dtype=torch.float32, device=y.device) for _ in range(4)]
    with _on(y):
        stats_kernel[(rows, triton.cdiv(nb, GROUP))](y, y.stride(0), vocab, nb, *out, GROUP_=GROUP, BLOCK_=BLOCK)
    return tuple(out)


def gather_dot(x: torch.Tensor, w: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The Triton twin of gather_dot_torch."""
    triton, _, gather_kernel = _kernels()
    rows, ncols = cols.shape
    x = x.float().contiguous()
    w = w.contiguous()
    cols = cols.contiguous()
    out = torch.empty((rows, ncols), dtype=torch.float32, device=x.device)
    with _on(x):
        gather_kernel[(rows, triton.cdiv(ncols, DOT_COLS))](
            x, w, cols, out, x.shape[1], ncols, COLS=DOT_COLS, STEP=HIDDEN_STEP
        )
    return out


def _on(t: torch.Tensor):
    """Triton launches on the current CUDA device, whatever the tensors' device: make it theirs."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@lru_cache(maxsize=None)
def fused_ok(device: str) -> bool:
    """True when the Triton kernels run on ``device`` and agree with their torch twins there, in each
    variant Triton specialises (logits in bf16 and fp32; sizes divisible by 16 or not)."""
    if _interpreting() != (device == "cpu"):  # compiled on a GPU, or interpreted on the CPU; never both
        return False
    try:
        _kernels()
    except Exception:  # Triton missing or broken: the torch path serves
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        for vocab, hidden in ((1000, 300), (1024, 256)):
            for dtype in (torch.bfloat16, torch.float32):
                y = (torch.randn(5, vocab, generator=gen) * 4).to(device, dtype)
                for got, want in zip(block_stats(y), block_stats_torch(y)):
                    if not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
                        return False
                x = torch.randn(5, hidden, generator=gen).to(device)
                w = torch.randn(vocab, hidden, generator=gen).to(device, dtype)
                cols = torch.randint(0, vocab, (5, 36), generator=gen).to(device)
                if not torch.allclose(gather_dot(x, w, cols), gather_dot_torch(x, w, cols), rtol=1e-4, atol=1e-3):
                    return False
        return True
    except Exception:
        return False
