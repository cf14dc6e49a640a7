"""BOX: pixel boxes of the instruction's image -> `bins` quantized coordinates each, as bin
tokens; and back.  The image preprocessor transforms the boxes with the image first."""
from __future__ import annotations

from .base import Context, Tokens


def parse_box(value) -> list[float]:
    if isinstance(value, str):
        parts = value.replace(";", ",").split(",")
    else:
        parts = list(value)
    if len(parts) != 4:
        raise ValueError(f"a box is four numbers x0,y0,x1,y1; found {value!r}")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"a box is four numbers x0,y0,x1,y1; found {value!r}") from None
    if x1 < x0 or y1 < y0:
        raise ValueError(f"a box needs x0 <= x1 and y0 <= y1; found {value!r}")
    return [x0, y0, x1, y1]


def quantize(box: list[float], size: int, bins: int) -> list[int]:
    """Coordinates in [0, size] -> bins in [0, bins-1]."""
    return [min(bins - 1, max(0, int(round(c / size * (bins - 1))))) for c in box]


def dequantize(bins_: list[int], size: int, bins: int, orig_size: tuple[int, int], flipped: bool = False):
    """Bin indices -> a box in pixels of the original image (undoing resize and flip)."""
    w, h = orig_size
    x0, y0, x1, y1 = (b / (bins - 1) * size for b in bins_)
    if flipped:
        x0, x1 = size - x1, size - x0
    return [x0 * w / size, y0 * h / size, x1 * w / size, y1 * h / size]


def box(transformed: list[float], attrs: dict, ctx: Context, size: int) -> Tokens:
    return Tokens([ctx.vocab.bin(k) for k in quantize(transformed, size, attrs["bins"])])
