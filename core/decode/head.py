"""The LM head, final norm and soft-capping prepared on one device, and the exact float32 rescoring."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ...errors import DamagedModel
from ..loading.adapter import Adapter, fp32_norm


@dataclass
class Head:
    """The LM head, final norm and soft-capping prepared on one device for one matmul dtype."""

    adapter: Adapter
    device: torch.device
    mm_dtype: torch.dtype
    dot: Callable | None = None  # fused gather-dot (core.decode.kernels.gather_dot) for the exact rescoring
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
            bool(torch.isfinite(p).all()) for p in self.norm.parameters()
        ):
            raise DamagedModel(
                f"{self.adapter.origin or 'the checkpoint'}: the LM head or final norm holds NaN or "
                f"infinite values (the file is damaged)"
            )
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
            self._gather = (
                torch.empty((step * per_row, self.hidden), dtype=self.w_exact.dtype, device=x.device),
                torch.empty((step * per_row, self.hidden), dtype=torch.float32, device=x.device),
            )
        native, wide = self._gather
        out = torch.empty(cols.shape, dtype=torch.float32, device=x.device)
        for s in range(0, rows, step):
            c = cols[s : s + step].flatten()
            n = c.numel()
            if native.dtype == torch.float32:
                w = torch.index_select(self.w_exact, 0, c, out=wide[:n])
            else:
                w = wide[:n].copy_(torch.index_select(self.w_exact, 0, c, out=native[:n]))
            w = w.view(-1, per_row, self.hidden)  # [r, C, H]
            out[s : s + step] = torch.bmm(w, x[s : s + step].unsqueeze(-1)).squeeze(-1)
        if self.bias is not None:
            out = out + self.bias[cols]
        return self._cap(out)

    def _cap(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.softcap is None else torch.tanh(t / self.softcap) * self.softcap
