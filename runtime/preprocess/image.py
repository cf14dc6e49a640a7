"""IMAGE: decode with Pillow, resize with torchvision transforms v2 (boxes of the same image
are transformed jointly, as tv_tensors.BoundingBoxes); normalization happens per batch on the
device (`normalize`, called by Batch.to)."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..buffers import Recycler
from ..data.media import load_image
from .base import Context, Features

_INTERP = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
           "nearest": InterpolationMode.NEAREST}


def image(value, attrs: dict, ctx: Context, boxes: list | None = None) -> Features:
    """`boxes`: pixel boxes [[x0,y0,x1,y1], ...] of this image, returned transformed in `meta`."""
    pil = load_image(value, ctx.base_dir)
    w, h = pil.size
    size = attrs["size"]
    img = _hwc_tensor(pil)  # uint8 [3,H,W], channels-last in memory
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
    meta = {"orig_size": (w, h), "size": size, "flipped": flipped}
    if bb is not None:
        meta["boxes"] = bb.as_subclass(torch.Tensor).tolist()
    border = int(size * (1 - attrs["mask_ratio"]) / 2) if attrs.get("mask_ratio") else 0
    return Features(img, meta, norm=(tuple(attrs["mean"]), tuple(attrs["std"])), mask_border=border)


def _hwc_tensor(pil) -> torch.Tensor:
    """A PIL RGB image as a uint8 [3,H,W] view of its pixels in HWC order (channels-last).
    torchvision's uint8 resize kernels work on channels-last data, so this skips two full
    transposes (pil_to_tensor's HWC->CHW copy and resize's repack back), which matters most
    when several workers share the memory bus."""
    arr = np.asarray(pil)  # [H,W,3], read-only (it wraps PIL's bytes)
    with warnings.catch_warnings():  # nothing writes to it: resize, flip and jitter return new tensors
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr).permute(2, 0, 1)


_outputs = Recycler()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, border: torch.Tensor) -> torch.Tensor:
    """uint8 images [N,3,H,W] or clips [N,T,3,H,W] -> normalized float, per-row mean/std [N,3];
    rows with a mask border get their centre zeroed (image infilling input).

    (x/255 - mean)/std is one affine map per channel, x*a + b, applied row by row so each
    image is converted and scaled while it is in cache: normalization is memory-bound.  On the
    CPU the float output reuses an earlier batch's block once nothing refers to it (`Recycler`):
    a fresh 12 MB block costs a page fault per 4 KiB, as much as the normalization itself."""
    shape = (1,) * (x.dim() - 4) + (3, 1, 1)
    scale = (1.0 / (255.0 * std)).to(x.device)
    shift = (-mean / std).to(x.device)
    if x.device.type == "cpu":
        y = _outputs.empty(x.shape, torch.float32)
        for row in range(x.shape[0]):
            y[row].copy_(x[row]).mul_(scale[row].view(shape)).add_(shift[row].view(shape))
    else:  # on an accelerator one batched kernel is best (and its caching allocator reuses memory)
        y = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        y.copy_(x).mul_(scale.view((-1,) + shape)).add_(shift.view((-1,) + shape))
    for row in torch.nonzero(border).flatten().tolist():
        b = int(border[row])
        y[row, ..., b:y.shape[-2] - b, b:y.shape[-1] - b] = 0
    return y


PREPROCESSORS = {"image": image, "imagenet": image, "imagepretrain": image}
