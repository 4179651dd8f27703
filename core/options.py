"""Engine options that need no torch: what --dtype, --device and --top-k may be, and the decode recipe."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

from ..choices import DEFAULT_TOP_K, TOP_K_RANGE
from ..errors import DeviceError, UsageError

DTYPES = ("auto", "float32", "bfloat16")
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; choose {', '.join(DTYPES)}")
    return dtype


def check_top_k(top_k) -> int:
    """Tokens kept per neuron-direction: the one check of the bound (the API calls it, the CLI's --top-k too)."""
    low, high = TOP_K_RANGE
    if not isinstance(top_k, int) or not low <= top_k <= high:
        raise UsageError(f"top_k must be a whole number from {low} to {high}")
    return top_k


def check_device_name(name: str) -> str:
    """The form of a --device value: auto, cpu, cuda or cuda:N (whether it exists needs torch)."""
    if not isinstance(name, str) or not DEVICE.fullmatch(name):
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    return name


def under_torchrun() -> bool:
    """This process is one rank of a torchrun (or torch.distributed) launch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@dataclass
class DecodeRecipe:
    """What a decode makes: top-k tokens per neuron-direction of ``views``, on ``device`` in ``dtype`` (torch-free,
    so the API and the pipeline build one before anything loads)."""

    top_k: int = DEFAULT_TOP_K
    views: Sequence[str] | None = None  # None: every view the model has (ModelInfo.check_views)
    device: str = "auto"
    dtype: str = "auto"
    budget_mb: int | None = None  # logits chunk memory; default: 128 MiB on CPU, 40% of free GPU memory
    # "auto": the blockwise scorer with the fused Triton kernels where they pass their self-check on the
    # device (CUDA), else the classic torch passes; "blockwise" forces the blockwise scorer (with the
    # kernels' torch twins where the kernels cannot run); "classic" forces the torch passes
    engine: str = "auto"
