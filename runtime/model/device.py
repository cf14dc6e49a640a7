"""Where the model runs and in which precision (`train { device, precision }`, `--device`)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import NotSupportedYet


def has_native_bf16() -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with bf16 matrix units (AVX512-BF16, AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise NotSupportedYet("`device = cuda` on a machine without a CUDA GPU",
                              help="use `--device cpu` (or `auto`)")
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> torch.dtype | None:
    """None for fp32; torch.bfloat16 for bf16 autocast."""
    if requested == "fp32":
        return None
    if requested == "bf16" or (device.type == "cuda" or has_native_bf16()):
        return torch.bfloat16
    return None
