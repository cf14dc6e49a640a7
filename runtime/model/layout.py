"""Weight layouts for the few-row matmuls of a generation step on the CPU: oneDNN's prepacked
layout where it is measured faster on this machine, else the transposed plain layout.  The
measurements are kept per machine (`layout_cache_path`), so that every process on it takes the
same layouts (they change the logits in their last bits)."""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Prepacked:
    """A weight reordered once into oneDNN's blocked layout for the few-row matmuls of a
    generation step (CPU, fp32).  Where it pays (`pack_weight` measures), the plain matmul
    repacks the weight on every call, which with few rows costs as much as the multiplication.
    `plain` is the weight itself, for when the layer must step aside (autocast, another dtype)."""

    def __init__(self, weight: torch.Tensor):
        self.plain = weight
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach())


def _can_prepack(weight: torch.Tensor) -> bool:
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


# "cpu|torch|threads|out x in|rows" -> whether the prepacked layout is the faster there: measured
# once per machine (`prepack_pays`), kept in the layout cache file; None until that is read
_PREPACK_FASTER: dict[str, bool] | None = None


def layout_cache_path() -> Path:
    """Where measured weight layouts are kept: $OFAC_CACHE_DIR, else $XDG_CACHE_HOME/ofac, else
    ~/.cache/ofac; the file layouts.json."""
    root = os.environ.get("OFAC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ofac")
    return Path(root) / "layouts.json"


@functools.lru_cache(maxsize=None)
def _cpu_name() -> str:
    """The CPU's model name and the vector extension torch uses on it (a VM's model name can be
    as generic as "Intel(R) Xeon(R) Processor")."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def _read_layouts() -> dict[str, bool]:
    """The layouts the cache file holds ({} where there is none or it is unreadable)."""
    try:
        known = json.loads(layout_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in known.items() if isinstance(v, bool)} if isinstance(known, dict) else {}


def _remember_layout(key: str, faster: bool) -> bool:
    """Add a measured layout to the cache file; -> the layout to take: the file's where another
    process measured the same key meanwhile (the first measurement stands, so processes that
    raced agree).  Best effort: an unwritable cache only means measuring again next time.
    Written whole to a temporary file, then renamed."""
    path = layout_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = _read_layouts()
        if key in known:
            return known[key]
        known[key] = faster
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=0, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass
    return faster


def _layout_seconds(weight: torch.Tensor, rows: int) -> tuple[float, float]:
    """Seconds per matmul of `rows` rows by `weight` [out, in] (with a bias), in oneDNN's
    prepacked layout and in the transposed plain layout: the best of 3 interleaved rounds."""
    out_features, in_features = weight.shape
    x = torch.randn(rows, in_features, generator=torch.Generator().manual_seed(0))
    bias = torch.zeros(out_features)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach())
    plain = weight.detach().t().contiguous()
    runs = (lambda: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], ""),
            lambda: torch.addmm(bias, x, plain))

    def seconds(fn, n):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n

    with torch.autocast("cpu", enabled=False), torch.no_grad():  # the fp32 matmuls themselves
        for fn in runs:
            fn()  # oneDNN builds its kernel on the first call
        n = max(2, min(50, int(5e-4 / max(seconds(runs[1], 1), 1e-6))))  # about half a millisecond a round
        best = [math.inf, math.inf]
        for _ in range(3):
            for i, fn in enumerate(runs):
                best[i] = min(best[i], seconds(fn, n))
    return best[0], best[1]


def _layout_key(weight: torch.Tensor, rows: int) -> tuple[str, int]:
    """-> the layout cache's key for this weight at `rows` rows, and the rows measured: the next
    power of two."""
    rows = 1 << max(0, rows - 1).bit_length()
    out_features, in_features = weight.shape
    return (f"{_cpu_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads|"
            f"{out_features} x {in_features}|{rows} rows"), rows


def prepack_pays(weight: torch.Tensor, rows: int) -> bool:
    """Whether oneDNN's prepacked layout multiplies `rows` rows by this weight faster than the
    transposed plain layout.  Which is faster depends on the CPU, the shape and the rows (on an
    AVX-512 EPYC prepacked is 1.2-2x faster at 16 rows for weights of 256 x 768 and up; on a
    Xeon with AMX it is 2x slower at 1 row and about even at 80), so it is measured, once per
    shape, power-of-two row count and thread count, in a few milliseconds, and kept per machine
    (`layout_cache_path`): the layouts change the logits in their last bits, so every process on
    a machine (training's validation, `ofac eval`) must take the same ones to give the same
    answers.  Prepacked only when at least 10% faster.  OFAC_PREPACK=always|never skips the
    measurement."""
    global _PREPACK_FASTER
    if not _can_prepack(weight):
        return False
    policy = os.environ.get("OFAC_PREPACK", "auto")
    if policy in ("always", "never"):
        return policy == "always"
    if _PREPACK_FASTER is None:
        _PREPACK_FASTER = _read_layouts()
    key, rows = _layout_key(weight, rows)
    if key not in _PREPACK_FASTER:
        packed, plain = _layout_seconds(weight, rows)
        _PREPACK_FASTER[key] = _remember_layout(key, packed < 0.9 * plain)
    return _PREPACK_FASTER[key]


def pack_weight(weight: torch.Tensor, prepack: bool):
    """A pack entry for the weight [out, in] of a linear map: Prepacked (`prepack`, where
    `prepack_pays`), else the weight transposed and contiguous (the fastest plain layout for
    addmm)."""
    if prepack:
        return Prepacked(weight)
    return weight.detach().t().contiguous()


def linear(layer: nn.Linear | None, x, pack: dict | None = None, gelu: bool = False, key=None):
    """layer(x), then GELU if asked.  With a generation `pack` (EncoderDecoder.pack_decoder)
    the weight comes from the pack (under `key`, else under the layer): prepacked for oneDNN,
    or transposed once per generation, layouts that are faster for the few rows of a step.
    `layer` None: no bias (the output projection)."""
    bias = None if layer is None else layer.bias
    if pack is None:
        y = layer(x)
        return F.gelu(y) if gelu else y
    w = pack[layer if key is None else key]
    if isinstance(w, Prepacked):
        if x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type):
            return torch.ops.mkldnn._linear_pointwise(x, w.weight, bias, "gelu" if gelu else "none", [],
                                                      "none" if gelu else "")
        y = F.linear(x, w.plain, bias)  # autocast decides
    else:
        x2 = x.reshape(-1, x.shape[-1])
        y = (torch.mm(x2, w) if bias is None else torch.addmm(bias, x2, w)).view(*x.shape[:-1], -1)
    return F.gelu(y) if gelu else y
