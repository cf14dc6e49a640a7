"""IMAGE: decode with Pillow, resize and normalize with torchvision transforms v2; boxes of
the same image are transformed jointly (tv_tensors.BoundingBoxes)."""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..data.media import load_image
from .base import Context, Features

_INTERP = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
           "nearest": InterpolationMode.NEAREST}


def image(value, attrs: dict, ctx: Context, boxes: list | None = None) -> Features:
    """`boxes`: pixel boxes [[x0,y0,x1,y1], ...] of this image, returned transformed in `meta`."""
    pil = load_image(value, ctx.base_dir)
    w, h = pil.size
    size = attrs["size"]
    img = F.pil_to_tensor(pil)  # uint8 [3,H,W]
    bb = None
    if boxes:
        bb = tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), format="XYXY",
                                      canvas_size=(h, w))
    img = F.resize(img, [size, size], interpolation=_INTERP[attrs.get("interpolation", "bicubic")], antialias=True)
    if bb is not None:
        bb = F.resize(bb, [size, size])
    flipped = False
    if ctx.training and attrs.get("augment"):
        if ctx.rng.random() < 0.5:
            img, flipped = F.horizontal_flip(img), True
            bb = F.horizontal_flip(bb) if bb is not None else None
        img = F.adjust_brightness(img, float(ctx.rng.uniform(0.8, 1.2)))
        img = F.adjust_contrast(img, float(ctx.rng.uniform(0.8, 1.2)))
    x = F.to_dtype(img, torch.float32, scale=True)
    x = F.normalize(x, list(attrs["mean"]), list(attrs["std"]))
    if attrs.get("mask_ratio"):  # image infilling input: zero the centre square
        border = int(size * (1 - attrs["mask_ratio"]) / 2)
        x[:, border:size - border, border:size - border] = 0
    meta = {"orig_size": (w, h), "size": size, "flipped": flipped}
    if bb is not None:
        meta["boxes"] = bb.as_subclass(torch.Tensor).tolist()
    return Features(x, meta)


PREPROCESSORS = {"image": image, "imagenet": image, "imagepretrain": image}
