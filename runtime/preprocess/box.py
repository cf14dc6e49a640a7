"""BOX: a box in pixels of the instruction's image -> `bins` quantized coordinates each, as bin
tokens; and back.  A box follows its image's preprocessing (the op's second argument): resized,
cropped and mirrored with it (`Geometry`)."""
from __future__ import annotations

from ..vocab.tokenizer import Reserved
from .base import Context, Features, Geometry, Tokens, preprocessors

REGISTRY = preprocessors()


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


def dequantize(bins_: list[int], bins: int, geometry: Geometry) -> list[float]:
    """Bin indices -> a box in pixels of the original image (undoing its preprocessing)."""
    return geometry.inverse([b / (bins - 1) * geometry.size for b in bins_])


@REGISTRY.register("box", required=("bins",), reserves=lambda attrs: Reserved(bins=attrs["bins"]),
                   cell=lambda value, attrs, base_dir: parse_box(value))
def box(value, attrs: dict, ctx: Context, image: Features) -> Tokens:
    geometry = image.meta["geometry"]
    moved = geometry.forward(parse_box(value))
    return Tokens([ctx.vocab.bin(k) for k in quantize(moved, geometry.size, attrs["bins"])])
