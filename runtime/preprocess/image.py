"""IMAGE: decode with Pillow, crop and resize with torchvision transforms v2 on uint8, channels-
last; normalization happens per batch on the device (`data.collate.normalize`).

  image          the whole image resized to a square (OFASys: aspect ratio not kept); no
                 augmentation
  imagenet       training: a random resized crop (scale 0.08-1, ratio 3/4-4/3), a random
                 horizontal flip, RandAugment (2 ops, magnitude 9), colour jitter 0.4 and random
                 erasing (p 0.25), after timm's `rand-m9` ImageNet recipe OFASys uses; evaluation:
                 the centre 87.5% crop
  imagepretrain  training: resized so the shorter side is a random length in [S, 1.5 S] (the
                 longer side at most 672), the centre S x S crop, RandAugment; evaluation: the
                 centred square

RandAugment here draws from its photometric operations only (colour, contrast, posterize,
equalize, ...): the pixels move only by crops, resizes and flips, the transforms the image's
boxes follow exactly (`Geometry`); timm's shears, translations and rotations would leave an
axis-aligned box behind.  Every random draw comes from the example's own RNG (`Context.rng`),
so an example is the same in every worker and after a resume."""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from .base import EVAL_REGION, IMAGE_ATTRS, Context, Features, Geometry, centre_square, mask_border, preprocessors
from .media import load_image, media_cell

REGISTRY = preprocessors()
_INTERP = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
           "nearest": InterpolationMode.NEAREST}


class _PhotometricRandAugment(v2.RandAugment):
    _AUGMENTATION_SPACE = {k: v for k, v in v2.RandAugment._AUGMENTATION_SPACE.items()
                           if k not in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")}


_RAND_AUGMENT = _PhotometricRandAugment(num_ops=2, magnitude=9)
_JITTER = v2.ColorJitter(0.4, 0.4, 0.4)
_ERASE = v2.RandomErasing(p=0.25, value=0)
MAX_PRETRAIN_SIDE = 672


def _hwc_tensor(pil) -> torch.Tensor:
    """A PIL RGB image as a uint8 [3,H,W] view of its pixels in HWC order (channels-last).
    torchvision's uint8 resize kernels work on channels-last data, so this skips two full
    transposes (pil_to_tensor's HWC->CHW copy and resize's repack back), which matters most
    when several workers share the memory bus."""
    arr = np.asarray(pil)  # [H,W,3], read-only (it wraps PIL's bytes)
    with warnings.catch_warnings():  # nothing writes to it: resize, flip and jitter return new tensors
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr).permute(2, 0, 1)


def _with_rng(ctx: Context, transform, img: torch.Tensor) -> torch.Tensor:
    """Apply a torchvision random transform with the example's RNG instead of torch's global one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(ctx.rng.integers(2 ** 62)))
        return transform(img)


def _crop_resize(img: torch.Tensor, region, size: int, interpolation: str) -> torch.Tensor:
    x0, y0, x1, y1 = (int(c) for c in region)  # regions are on whole pixels
    interp = _INTERP[interpolation]
    if (x0, y0) == (0, 0) and (x1, y1) == (img.shape[-1], img.shape[-2]):
        return F.resize(img, [size, size], interpolation=interp, antialias=True)
    return F.resized_crop(img, y0, x0, y1 - y0, x1 - x0, [size, size], interpolation=interp, antialias=True)


def _features(img: torch.Tensor, geometry: Geometry, attrs: dict) -> Features:
    return Features(img, {"geometry": geometry}, norm=(tuple(attrs["mean"]), tuple(attrs["std"])),
                    mask_border=mask_border(attrs))


@REGISTRY.register("image", attrs=IMAGE_ATTRS, required=("size", "mean", "std"), cell=media_cell("image"))
def image(value, attrs: dict, ctx: Context) -> Features:
    pil = load_image(value, ctx.base_dir)
    w, h = pil.size
    size = attrs["size"]
    img = _crop_resize(_hwc_tensor(pil), EVAL_REGION["image"](w, h), size, attrs.get("interpolation", "bicubic"))
    return _features(img, Geometry.whole(w, h, size), attrs)


def _random_resized_crop(ctx: Context, w: int, h: int) -> tuple[float, float, float, float]:
    """RandomResizedCrop's region (scale 0.08-1 of the area, log-uniform aspect 3/4-4/3; ten
    tries, then the centre crop), drawn from the example's RNG."""
    area = w * h
    for _ in range(10):
        target = area * ctx.rng.uniform(0.08, 1.0)
        ratio = math.exp(ctx.rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(ctx.rng.integers(0, w - cw + 1)), int(ctx.rng.integers(0, h - ch + 1))
            return (float(x0), float(y0), float(x0 + cw), float(y0 + ch))
    return EVAL_REGION["imagenet"](w, h)


@REGISTRY.register("imagenet", attrs=IMAGE_ATTRS, required=("size", "mean", "std"), cell=media_cell("image"))
def imagenet(value, attrs: dict, ctx: Context) -> Features:
    pil = load_image(value, ctx.base_dir)
    w, h = pil.size
    size, interp = attrs["size"], attrs.get("interpolation", "bicubic")
    if not ctx.training:
        region = EVAL_REGION["imagenet"](w, h)
        return _features(_crop_resize(_hwc_tensor(pil), region, size, interp), Geometry((w, h), region, size), attrs)
    region = _random_resized_crop(ctx, w, h)
    img = _crop_resize(_hwc_tensor(pil), region, size, interp)
    flipped = bool(ctx.rng.random() < 0.5)
    if flipped:
        img = F.horizontal_flip(img)
    img = _with_rng(ctx, lambda x: _ERASE(_JITTER(_RAND_AUGMENT(x))), img)
    return _features(img, Geometry((w, h), region, size, flipped), attrs)


@REGISTRY.register("imagepretrain", attrs=IMAGE_ATTRS, required=("size", "mean", "std"),
                   cell=media_cell("image"))
def imagepretrain(value, attrs: dict, ctx: Context) -> Features:
    pil = load_image(value, ctx.base_dir)
    w, h = pil.size
    size, interp = attrs["size"], attrs.get("interpolation", "bicubic")
    fraction = 1.0
    if ctx.training:  # shorter side resized to r in [S, 1.5 S], then the centre S crop
        longest = max(size, MAX_PRETRAIN_SIDE * min(w, h) / max(w, h))
        fraction = size / ctx.rng.uniform(size, max(size, min(1.5 * size, longest)))
    region = centre_square(w, h, fraction)
    img = _crop_resize(_hwc_tensor(pil), region, size, interp)
    if ctx.training:
        img = _with_rng(ctx, _RAND_AUGMENT, img)
    return _features(img, Geometry((w, h), region, size), attrs)
