"""Neuron weight vectors -> the model's final norm -> LM head -> softmax top-k, many neurons per matmul.

For a chunk of R neuron vectors the engine does one matmul against the LM head, then a handful of
in-place passes over the R x V logits:
- block maxima (and minima) over groups of 64 tokens give each row's max/min and a small set of
  candidate columns that provably holds the top-k (a top-k element's block max is among the top-k
  block maxima), so no full top-k sort runs over the vocabulary;
- one exp pass centred between max and min, then a reciprocal pass, give both directions' softmax
  denominators: for an odd final norm (RMSNorm, bias-free LayerNorm) and a bias-free head the ``neg``
  logits are exactly minus the ``pos`` logits, and exp(c - y) = 1 / exp(y - c);
- candidates are rescored exactly in float32 from the stored weights. With a bfloat16 matmul the
  candidate set is 2k+16 wide, so bf16 rounding (about 2^-8 relative) can only change the top-k where
  more than k+16 tokens sit within that rounding of the k-th logit; the softmax denominator keeps the
  bf16 terms outside the candidates (bench/decode_bench.py measures the agreement with float32).
Only one chunk of logits is ever held.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from . import kernels
from .errors import Cancelled, DamagedModel, DeviceError, UsageError
from .kernels import BLOCK
from .options import check_device_name
from .models import Adapter, fp32_norm

MAX_HALF_RANGE = 80.0  # exp(80) and exp(-80) are both safe in float32
HEAD_SLICE = 8192      # vocabulary rows per bf16 matmul
# torch < 2.5 names it only under torch.cuda
_OOM = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


@dataclass
class DecodeRecipe:
    top_k: int = 10
    views: Sequence[str] = ("up", "gate", "down")
    device: str = "auto"
    dtype: str = "auto"
    budget_mb: int | None = None   # logits chunk memory; default: 128 MiB on CPU, 40% of free GPU memory
    # "auto": the blockwise scorer with the fused Triton kernels where they pass their self-check on the
    # device (CUDA), else the classic torch passes; "blockwise" forces the blockwise scorer (with the
    # kernels' torch twins where the kernels cannot run); "classic" forces the torch passes
    engine: str = "auto"


def pick_device(name: str = "auto") -> torch.device:
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} was given but no CUDA GPU is available")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "cuda" and device.index is None:  # pin it: helper threads start on device 0
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The matmul dtype. auto: bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if name != "auto":
        raise UsageError(f"unknown dtype {name!r}; choose auto, float32 or bfloat16")
    if device.type == "cuda":
        return torch.bfloat16
    cpu = getattr(torch, "cpu", None)
    fast_bf16 = getattr(cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    return torch.bfloat16 if fast_bf16 else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass
class Head:
    """The LM head, final norm and soft-capping prepared on one device for one matmul dtype."""

    adapter: Adapter
    device: torch.device
    mm_dtype: torch.dtype
    dot: Callable | None = None    # fused gather-dot (core.kernels.gather_dot) for the exact rescoring
    w_exact: torch.Tensor = field(init=False)
    w_mm: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        weight = self.adapter.head.weight.detach()
        self.w_exact = weight.to(self.device)
        self.w_mm = self.w_exact if self.w_exact.dtype == self.mm_dtype else self.w_exact.to(self.mm_dtype)
        bias = getattr(self.adapter.head, "bias", None)
        self.bias = None if bias is None else bias.detach().to(self.device, torch.float32)
        self.softcap = float(self.adapter.softcap) if self.adapter.softcap else None
        self.norm = fp32_norm(self.adapter, self.device)
        self.vocab, self.hidden = self.w_exact.shape
        if not bool(torch.isfinite(self.w_exact).all()) or not all(
                bool(torch.isfinite(p).all()) for p in self.norm.parameters()):
            raise DamagedModel(f"{self.adapter.origin or 'the checkpoint'}: the LM head or final norm holds NaN or "
                               f"infinite values (the file is damaged)")
        self.shared_neg = self.bias is None and self._norm_is_odd()
        # the blockwise scorer works on the raw matmul output: no bias to add, no soft-capping to apply
        self.blockwise_ok = self.bias is None and self.softcap is None
        self._gather: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.inference_mode()
    def _norm_is_odd(self) -> bool:
        """True when norm(-x) == -norm(x), so one matmul serves both directions exactly."""
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(8, self.hidden, generator=gen).to(self.device) * 3 + 0.5
        a, b = self.norm(-x), -self.norm(x)
        return bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(b.abs().max())))

    def logits_exact(self, x: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Float32 logits of rows ``x`` [R, H] at columns ``cols`` [R, C], from the stored weights: with
        the fused gather-dot, or through two reused buffers (about 16 MB on CPU, 256 MB on GPU) of
        gathered head rows (no allocation per chunk)."""
        if self.dot is not None:
            out = self.dot(x, self.w_exact, cols)
            if self.bias is not None:
                out = out + self.bias[cols]
            return self._cap(out)
        rows, per_row = cols.shape
        budget = (16 << 20) if x.device.type == "cpu" else (256 << 20)  # cache-sized on CPU; few launches on GPU
        step = max(1, budget // (per_row * self.hidden * 4))
        if self._gather is None or self._gather[1].shape[0] < step * per_row:
            self._gather = (torch.empty((step * per_row, self.hidden), dtype=self.w_exact.dtype, device=x.device),
                            torch.empty((step * per_row, self.hidden), dtype=torch.float32, device=x.device))
        native, wide = self._gather
        out = torch.empty(cols.shape, dtype=torch.float32, device=x.device)
        for s in range(0, rows, step):
            c = cols[s:s + step].flatten()
            n = c.numel()
            if native.dtype == torch.float32:
                w = torch.index_select(self.w_exact, 0, c, out=wide[:n])
            else:
                w = wide[:n].copy_(torch.index_select(self.w_exact, 0, c, out=native[:n]))
            w = w.view(-1, per_row, self.hidden)                       # [r, C, H]
            out[s:s + step] = torch.bmm(w, x[s:s + step].unsqueeze(-1)).squeeze(-1)
        if self.bias is not None:
            out = out + self.bias[cols]
        return self._cap(out)

    def _cap(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.softcap is None else torch.tanh(t / self.softcap) * self.softcap


def _block_candidates(f: torch.Tensor, blk: torch.Tensor | None, kc: int, largest: bool) -> torch.Tensor:
    """Column indices [R, kc] that hold each row's top-kc (largest or smallest) values of f [R, V]."""
    rows, vocab = f.shape
    main = 0 if blk is None else blk.shape[1] * BLOCK
    cols = []
    if blk is not None and main:
        kb = min(kc, blk.shape[1])
        bidx = blk.topk(kb, dim=1, largest=largest).indices
        offs = torch.arange(BLOCK, device=f.device)
        cols.append((bidx.unsqueeze(-1) * BLOCK + offs).reshape(rows, -1))
    if main < vocab:
        cols.append(torch.arange(main, vocab, device=f.device).expand(rows, -1))
    cols = torch.cat(cols, dim=1) if len(cols) > 1 else cols[0]
    sel = f.gather(1, cols).topk(min(kc, cols.shape[1]), dim=1, largest=largest).indices
    return cols.gather(1, sel)


class Scorer:
    """Top-k of softmax(lm_head(x)) for chunks of normalised vectors x."""

    def __init__(self, head: Head, top_k: int, stats: Callable | None = None):
        self.head = head
        # blockwise scoring (the GPU path): per-64-token-block max/min/partial sums from one pass over the
        # logits (core.kernels.block_stats or its torch twin); only for heads without bias or soft-capping
        self.stats = stats if head.blockwise_ok else None
        self.k = min(top_k, head.vocab)
        # bf16 rounding can reorder near-ties, so take a margin of candidates for the exact rescoring.
        exact = head.mm_dtype == torch.float32
        self.kc = min(head.vocab, self.k if exact else 2 * self.k + 16)
        self._buffers: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, rows: int, dtype: torch.dtype, device: torch.device,
                width: int | None = None) -> torch.Tensor:
        """Reused logits buffers: a fresh multi-MB allocation per chunk costs page faults on CPU."""
        width = width or self.head.vocab
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != width or buf.dtype != dtype \
                or buf.device != device:
            self._buffers.pop(name, None)
            del buf  # free the old buffer before allocating its replacement
            buf = self._buffers[name] = torch.empty((rows, width), dtype=dtype, device=device)
        return buf[:rows]

    def release(self) -> None:
        self._buffers.clear()

    def score(self, x: torch.Tensor, both: bool):
        """x: [R, H] float32 normalised vectors. Returns [(ids, probs) for pos] (+ neg when ``both``)."""
        if self.stats is not None:
            return self._score_blockwise(x, both)
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
                w = h.w_mm[v:v + HEAD_SLICE]
                part = y[:, : w.shape[0]]
                torch.mm(xb, w.t(), out=part)
                f[:, v:v + w.shape[0]].copy_(part)
        if h.bias is not None:
            f.add_(h.bias)
        if h.softcap is not None:
            f.div_(h.softcap).tanh_().mul_(h.softcap)
        nb = h.vocab // BLOCK
        blocks = f[:, : nb * BLOCK].view(rows, nb, BLOCK) if nb else None
        bmax = blocks.amax(-1) if nb else None
        rmax = _row_extreme(f, bmax, nb, True)
        cand = [_block_candidates(f, bmax, self.kc, True)]
        if both:
            bmin = blocks.amin(-1) if nb else None
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

    def _score_blockwise(self, x: torch.Tensor, both: bool):
        """One matmul into a logits buffer in the matmul dtype, one pass for the block statistics, then
        candidates from the block maxima/minima and the same exact rescoring as the torch path."""
        h = self.head
        rows = x.shape[0]
        y = self._buffer("y", rows, h.mm_dtype, x.device)
        torch.mm(x.to(h.mm_dtype), h.w_mm.t(), out=y)
        bmax, bmin, spos, sneg = self.stats(y)
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
            exact = self.head.logits_exact(x, cand[d]) * sign   # this direction's logits at candidates
            approx_d = approx[d] * sign
            c = centres[d]
            total = sums[d] - torch.exp((approx_d - c.unsqueeze(1)).double()).sum(1) \
                + torch.exp((exact - c.unsqueeze(1)).double()).sum(1)
            lse = torch.log(total.clamp_min(1e-300)) + c.double()
            vals, order = exact.topk(self.k, dim=1)
            ids = cand[d].gather(1, order)
            probs = torch.exp(vals.double() - lse.unsqueeze(1)).float()
            results.append((ids, probs))
        return results


def _large_allocations_use_mmap(threshold: int = 1 << 20) -> None:
    """Serve allocations of 1 MiB and more with mmap, so memory freed between chunks goes straight back
    to the OS. glibc otherwise raises its mmap threshold after the first large free and keeps later
    multi-MB temporaries on a heap it never shrinks (the decode's resident size would creep upward)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _row_extreme(f: torch.Tensor, blk: torch.Tensor | None, nb: int, largest: bool) -> torch.Tensor:
    parts = []
    if blk is not None:
        parts.append(blk.amax(1) if largest else blk.amin(1))
    if nb * BLOCK < f.shape[1]:
        tail = f[:, nb * BLOCK:]
        parts.append(tail.amax(1) if largest else tail.amin(1))
    out = parts[0]
    for p in parts[1:]:
        out = torch.maximum(out, p) if largest else torch.minimum(out, p)
    return out


def chunk_rows(vocab: int, device: torch.device, budget_mb: int | None, bytes_per_logit: int = 8,
               bytes_per_row: int = 0) -> int:
    """Rows per chunk so that the chunk's buffers fit the budget: per-logit buffers (the classic path
    holds the float32 logits and the spare buffer a wide logit range needs, 8 bytes a logit) plus
    per-row ones (the candidate columns)."""
    per_row = vocab * bytes_per_logit + bytes_per_row
    if budget_mb is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = int(free * 0.4)
        else:
            budget = 128 << 20
    else:
        budget = budget_mb << 20
    return max(1, budget // per_row)


_copy_streams: dict = {}


def _upload(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device`` on a side stream and wait for it (on the calling thread only)."""
    if t.is_cuda:
        return t.to(device)
    flip = not t.is_contiguous() and t.t().is_contiguous()  # down views: copy the stored layout
    src = t.t() if flip else t.contiguous()
    if not src.is_pinned():
        src = src.pin_memory()
    stream = _copy_streams.get(device)
    if stream is None:
        stream = _copy_streams[device] = torch.cuda.Stream(device)
    with torch.cuda.stream(stream):
        out = src.to(device, non_blocking=True)
    stream.synchronize()
    return out.t() if flip else out


def _pick_engine(name: str, head: Head):
    """(engine label, block-stats fn, gather-dot fn, bytes per logit of a chunk's buffers). A head with
    bias or soft-capping always gets the classic passes."""
    if name not in ("auto", "blockwise", "classic"):
        raise UsageError(f"unknown engine {name!r}; choose auto, blockwise or classic")
    if not head.blockwise_ok:
        name = "classic"
    wanted = name == "blockwise" or (name == "auto" and head.device.type == "cuda")
    fused = wanted and kernels.fused_ok(str(head.device))
    width = torch.finfo(head.mm_dtype).bits // 8
    if fused:
        return "fused", kernels.block_stats, kernels.gather_dot, width + 1
    if name == "blockwise":  # the kernels' torch twins: padded float32 copies and exp temporaries
        return "blockwise", kernels.block_stats_torch, None, width + 16
    return "classic", None, None, 8


ProgressFn = Callable[[int, int], None]
UnitFn = Callable[[int, str, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], None]


class Decoder:
    """Decodes (layer, view) units of one loaded model on one device."""

    def __init__(self, adapter: Adapter, recipe: DecodeRecipe):
        self.adapter = adapter
        self.recipe = recipe
        self.device = pick_device(recipe.device)
        self.mm_dtype = pick_dtype(recipe.dtype, self.device)
        self.head = Head(adapter, self.device, self.mm_dtype)
        self.engine, stats, self.head.dot, per_logit = _pick_engine(recipe.engine, self.head)
        self.scorer = Scorer(self.head, recipe.top_k, stats)
        # each direction's candidate search holds kc blocks of 64 columns: int64 ids + gathered values
        per_row = 2 * self.scorer.kc * BLOCK * (8 + 4)
        self.rows = chunk_rows(self.head.vocab, self.device, recipe.budget_mb, per_logit, per_row)
        if self.device.type == "cpu":
            _large_allocations_use_mmap()

    def describe(self) -> str:
        text = f"{self.device.type} {str(self.mm_dtype).replace('torch.', '')}"
        return text if self.engine == "classic" else f"{text} {self.engine}"

    def fetch(self, layer: int, view: str) -> torch.Tensor:
        """One unit's vectors on the device (read from the checkpoint when the model is streamed). Runs on
        the reader thread: on a GPU the copy goes through page-locked memory on a stream of its own, so
        it overlaps the current unit's kernels instead of queueing between them."""
        cuda = self.device.type == "cuda"
        vectors = self.adapter.vectors(layer, view, pin=cuda)
        return _upload(vectors, self.device) if cuda else vectors

    @torch.inference_mode()
    def decode_unit(self, layer: int, view: str, progress: Callable[[int], None] | None = None,
                    cancel: threading.Event | None = None, vectors: torch.Tensor | None = None):
        """Both directions of one layer and view: ((ids, probs) pos, (ids, probs) neg), numpy [n, k]."""
        vectors = self.fetch(layer, view) if vectors is None else vectors
        if not bool(torch.isfinite(vectors).all()):
            raise DamagedModel(f"{self.adapter.origin or 'the checkpoint'}: layer {layer} {view} weights hold NaN "
                               f"or infinite values (the file is damaged)")
        n = vectors.shape[0]
        k = self.scorer.k
        out = [(np.empty((n, k), np.int32), np.empty((n, k), np.float32)) for _ in range(2)]
        start = 0
        while start < n:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            stop = min(n, start + self.rows)
            try:
                parts = self._score_rows(vectors[start:stop])
            except _OOM:
                if self.rows == 1:
                    raise
                self.rows = max(1, self.rows // 2)   # answer OOM with smaller chunks, never a crash
                self.scorer.release()
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            for (ids, probs), (ids_out, probs_out) in zip(parts, out):
                ids_out[start:stop] = ids.cpu().numpy()
                probs_out[start:stop] = probs.cpu().numpy()
            if progress is not None:
                progress(stop - start)
            start = stop
        if not all(np.isfinite(probs).all() for _, probs in out):
            peak = float(vectors.abs().max())
            raise DamagedModel(f"{self.adapter.origin or 'the checkpoint'}: layer {layer} {view} decodes to NaN "
                               f"probabilities (its weights reach {peak:.3g}: the file is damaged)")
        return out[0], out[1]

    def _score_rows(self, rows: torch.Tensor):
        v = rows.to(self.device, torch.float32)
        norm = self.head.norm
        if self.head.shared_neg:
            return self.scorer.score(norm(v), both=True)
        return self.scorer.score(norm(v), both=False) + self.scorer.score(norm(-v), both=False)

    def run(self, units: Sequence[tuple[int, str]], on_unit: UnitFn, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None) -> None:
        """Decode each unit and hand it to ``on_unit`` (which stores it). The next unit's weights are read
        and the previous unit is written on helper threads, so neither stalls the matmuls; a unit is
        always written before the run returns or raises."""
        total = len(units) * self.adapter.neurons
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        if progress is not None:
            progress(0, total)
        with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
            pending_write = None
            nxt = reader.submit(self.fetch, *units[0]) if units else None
            try:
                for i, (layer, view) in enumerate(units):
                    vectors = nxt.result()
                    if vectors.is_cuda:  # allocated on the copy stream, used on this one
                        vectors.record_stream(torch.cuda.current_stream(vectors.device))
                    nxt = reader.submit(self.fetch, *units[i + 1]) if i + 1 < len(units) else None
                    pos, neg = self.decode_unit(layer, view, step, cancel, vectors)
                    del vectors
                    if pending_write is not None:
                        pending_write.result()
                    pending_write = writer.submit(on_unit, layer, view, pos, neg)
            finally:
                if pending_write is not None:
                    pending_write.result()
