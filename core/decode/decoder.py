"""The threaded decoder: (layer, view) units read on a helper thread, scored in chunks sized to memory,
written on another helper thread; CUDA copies on a side stream; out-of-memory answered by smaller chunks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

from ...errors import Cancelled, DamagedModel, UsageError
from ..loading.adapter import Adapter
from ..options import DecodeRecipe
from . import kernels
from .device import pick_device, pick_dtype
from .head import Head
from .kernels import BLOCK
from .scorer import Scorer

# torch < 2.5 names it only under torch.cuda
_OOM = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


def _large_allocations_use_mmap(threshold: int = 1 << 20) -> None:
    """Serve allocations of 1 MiB and more with mmap, so memory freed between chunks goes straight back
    to the OS. glibc otherwise raises its mmap threshold after the first large free and keeps later
    multi-MB temporaries on a heap it never shrinks (the decode's resident size would creep upward)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def chunk_rows(
    vocab: int, device: torch.device, budget_mb: int | None, bytes_per_logit: int = 8, bytes_per_row: int = 0
) -> int:
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
    def decode_unit(
        self,
        layer: int,
        view: str,
        progress: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
        vectors: torch.Tensor | None = None,
    ):
        """Both directions of one layer and view: ((ids, probs) pos, (ids, probs) neg), numpy [n, k]."""
        vectors = self.fetch(layer, view) if vectors is None else vectors
        if not bool(torch.isfinite(vectors).all()):
            raise DamagedModel(
                f"{self.adapter.origin or 'the checkpoint'}: layer {layer} {view} weights hold NaN "
                f"or infinite values (the file is damaged)"
            )
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
                self.rows = max(1, self.rows // 2)  # answer OOM with smaller chunks, never a crash
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
            raise DamagedModel(
                f"{self.adapter.origin or 'the checkpoint'}: layer {layer} {view} decodes to NaN "
                f"probabilities (its weights reach {peak:.3g}: the file is damaged)"
            )
        return out[0], out[1]

    def _score_rows(self, rows: torch.Tensor):
        v = rows.to(self.device, torch.float32)
        norm = self.head.norm
        if self.head.shared_neg:
            return self.scorer.score(norm(v), both=True)
        return self.scorer.score(norm(v), both=False) + self.scorer.score(norm(-v), both=False)

    def run(
        self,
        units: Sequence[tuple[int, str]],
        on_unit: UnitFn,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
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
                    assert nxt is not None  # each unit's read was submitted before its turn
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
