"""VIDEO: decode with PyAV, sample N frames uniformly, resize; normalized on the device like IMAGE.
`video_augment` also mirrors about half the training clips (a mirrored clip moves the other
way: only for targets that never say left or right)."""
from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from .base import VIDEO_ATTRS, Context, Features, preprocessors
from .media import load_video, media_cell
from .memo import MEDIA, file_key

REGISTRY = preprocessors()


@REGISTRY.register("video", required=VIDEO_ATTRS, cell=media_cell("video"))
def video(value, attrs: dict, ctx: Context, mirror: bool = False) -> Features:
    n, size = attrs["num_frames"], attrs["size"]
    x = MEDIA.get(file_key(value, ctx.base_dir, "video", n, size), lambda: _frames(value, ctx, n, size))
    if mirror and ctx.training and ctx.rng.random() < 0.5:
        x = F.horizontal_flip(x)
    return Features(x, {"frames": len(x)}, norm=(tuple(attrs["mean"]), tuple(attrs["std"])))


def _frames(value, ctx: Context, n: int, size: int) -> torch.Tensor:
    """n frames [n, 3, size, size] uint8 sampled uniformly over the clip."""
    frames = load_video(value, ctx.base_dir, n)  # [N,H,W,3] uint8
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # [N,3,H,W]
    return F.resize(x, [size, size], antialias=True)


@REGISTRY.register("video_augment", required=VIDEO_ATTRS, cell=media_cell("video"))
def video_augment(value, attrs: dict, ctx: Context) -> Features:
    return video(value, attrs, ctx, mirror=True)
