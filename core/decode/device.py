"""Where a decode runs and in which matmul dtype."""

from __future__ import annotations

import torch

from ...errors import DeviceError, UsageError
from ..options import check_device_name


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
    fast_bf16 = (
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return torch.bfloat16 if fast_bf16 else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
