"""VIDEO: decode with PyAV, sample N frames uniformly, resize; normalized on the device like IMAGE."""
from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from ..data.media import load_video
from .base import Context, Features


def video(value, attrs: dict, ctx: Context) -> Features:
    frames = load_video(value, ctx.base_dir, attrs["num_frames"])  # [N,H,W,3] uint8
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # [N,3,H,W]
    size = attrs["size"]
    x = F.resize(x, [size, size], antialias=True)
    if ctx.training and attrs.get("augment") and ctx.rng.random() < 0.5:
        x = F.horizontal_flip(x)
    return Features(x, {"frames": len(frames)}, norm=(tuple(attrs["mean"]), tuple(attrs["std"])))


PREPROCESSORS = {"video": video, "video_augment": video}
