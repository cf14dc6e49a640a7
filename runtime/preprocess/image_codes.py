"""IMAGE as a generation target (`preprocess.image_vqgan`): the image as the grid x grid codes
of the run's image tokenizer, as code tokens of the shared vocabulary.

Training rows take their codes from the tokenizer's cache (computed once before training, so the
tokenizer never runs inside a training step); a cell the cache lacks is encoded when it is met.
A cell of code numbers (OFASys' `use_encode=False`) is taken as the codes themselves.  At the
`test` split the target is predicted, not read: nothing is encoded.  Outside training the
reference pixels travel with the sample (`meta["pixels"]`), for the metrics.  No torch here."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..vocab.tokenizer import Reserved
from .base import Context, Tokens, preprocessors
from .media import check_cell, load_image

REGISTRY = preprocessors()


def load_pixels(value, base_dir: Path | None, size: int) -> np.ndarray:
    """An image cell -> uint8 [size, size, 3]: the whole image resized to a square (Lanczos, as
    OFASys prepares images for its VQGAN)."""
    from PIL import Image

    img = load_image(value, base_dir)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def parse_codes(value) -> list[int] | None:
    """A cell that holds codes rather than an image (OFASys' `use_encode=False`): a string of
    whitespace- or comma-separated integers, or a list / 1-D integer array; else None."""
    if isinstance(value, str):
        parts = value.replace(",", " ").split()
        if len(parts) > 1 and all(p.isdigit() for p in parts):
            return [int(p) for p in parts]
        return None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, np.integer)) for v in value):
        return [int(v) for v in value]
    if isinstance(value, np.ndarray) and value.ndim == 1 and np.issubdtype(value.dtype, np.integer):
        return value.tolist()
    return None


class NotTrained:
    """The image tokenizer of a run that has not trained it yet (`ofac data` before `ofac run`):
    image targets are read and checked, and come out without codes."""

    def __init__(self, cfg):
        self.cfg = cfg


def tokenizer_of(ctx: Context, attrs: dict):
    tok = (ctx.resources or {}).get("image")
    if tok is None:
        raise ValueError("this run has no image tokenizer (it is trained by `ofac run` before the model)")
    cfg = tok.cfg
    if (attrs["grid"], attrs["size"], attrs["codes"]) != (cfg.grid, cfg.size, cfg.codes):
        raise ValueError(f"the instruction wants {attrs['size']}px images as {attrs['grid']}x{attrs['grid']} codes of "
                         f"{attrs['codes']}; this run's image tokenizer makes {cfg.size}px, {cfg.grid}x{cfg.grid} of "
                         f"{cfg.codes}")
    return tok


@REGISTRY.register("image_vqgan", attrs=("length",), required=("size", "codes", "grid"),
                   reserves=lambda attrs: Reserved(codes=attrs["codes"]),
                   cell=lambda value, attrs, base_dir: parse_codes(value) is not None or check_cell(value, base_dir,
                                                                                                   "image"))
def image_vqgan(value, attrs: dict, ctx: Context) -> Tokens:
    if ctx.split == "test":
        return Tokens([])
    codes = parse_codes(value)
    meta = None
    if codes is None:
        tok = tokenizer_of(ctx, attrs)
        if isinstance(tok, NotTrained):
            load_pixels(value, ctx.base_dir, attrs["size"])  # the cell must still be an image
            return Tokens([])
        codes = tok.codes_of(value, ctx.base_dir).tolist()
        if not ctx.training:
            meta = {"pixels": load_pixels(value, ctx.base_dir, attrs["size"])}
    elif len(codes) != attrs["grid"] ** 2 or max(codes) >= attrs["codes"]:
        raise ValueError(f"a cell of codes needs {attrs['grid'] ** 2} numbers in [0, {attrs['codes']}), found "
                         f"{len(codes)} up to {max(codes)}")
    ids = [ctx.vocab.code_ids[c] for c in codes]
    if attrs.get("length"):
        ids = ids[:attrs["length"]]
    return Tokens(ids, meta=meta)
