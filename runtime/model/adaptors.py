"""Encoder input adaptors (`adapt.<name>` ops on the encoder side), registered by name: each
turns one kind of input into a sequence of d_model vectors, `forward(x, lengths) -> (h [N, T, D],
lengths [N])`.  What each one takes (tokens, pixels, frames, clips) is declared in the modality
table (`ofac.modalities.ADAPTORS`), which the export and the torch-free runtime read too.

Shapes: N inputs of one adaptor in a batch, T positions, D = d_model, S image size, p patch size."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .config import ModelConfig

ADAPTORS = Registry("adapt")


def sincos(positions: torch.Tensor, d: int, span: int) -> torch.Tensor:
    """[n] positions in [0, span) -> [n, d] sin/cos features at geometric frequencies from one
    radian per position down to about a quarter turn over the span (the Transformer's scheme with
    its 10000 scaled to the span: a short grid keeps every feature informative)."""
    freq = 1.0 / (4.0 * span) ** (torch.arange(d // 2, dtype=torch.float32) / (d // 2))
    angle = positions.float()[:, None] * freq[None]
    return torch.cat([angle.sin(), angle.cos()], 1)


def sincos_2d(grid: int, d: int) -> torch.Tensor:
    """[grid*grid, d] initial positions of an image grid (row-major): half the features encode
    the row, half the column (as MAE).  Learnable afterwards; starting from coordinates rather
    than noise is what lets a model trained from scratch localize (grounding, detection) early."""
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos(ys.flatten(), d // 2, grid), sincos(xs.flatten(), d - d // 2, grid)], 1)


@ADAPTORS.register("text", shares_embedding=True)
class TextAdaptor(nn.Module):
    """Token ids -> the shared embedding plus learned positions restarting at each segment."""

    def __init__(self, cfg: ModelConfig, embed: nn.Embedding):
        super().__init__()
        self.embed = embed
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.scale = math.sqrt(cfg.d_model)

    def forward(self, ids, lengths=None):
        # ids: [N, T] -> [N, T, D], lengths [N]
        T = ids.shape[1]
        if T > self.pos.num_embeddings:
            raise ValueError(f"a token sequence of {T} exceeds max_positions={self.pos.num_embeddings}")
        x = self.embed(ids) * self.scale + self.pos(torch.arange(T, device=ids.device))
        if lengths is None:
            lengths = torch.full((ids.shape[0],), T, device=ids.device)
        return x, lengths


@ADAPTORS.register("image_patch")
class PatchAdaptor(nn.Module):
    """Images [N, 3, S, S] -> (S/p)^2 patch vectors (a ViT-style convolutional patch embedding)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.d_model, cfg.patch_size, stride=cfg.patch_size)
        self.grid = cfg.image_size // cfg.patch_size
        self.pos = nn.Parameter(sincos_2d(self.grid, cfg.d_model))

    def forward(self, images, lengths=None):
        x = self.proj(images)  # [N, D, g, g]
        if x.shape[-1] != self.grid:
            raise ValueError(f"images of {images.shape[-1]} px do not match the model's image_size")
        x = x.flatten(2).transpose(1, 2) + self.pos  # [N, g*g, D]
        return x, torch.full((x.shape[0],), x.shape[1], device=x.device)


@ADAPTORS.register("image_resnet")
class ResNetAdaptor(nn.Module):
    """`adaptor=image_resnet`: a small residual convolutional stem trained from scratch, one
    stride-2 stage per halving, down to the model's `patch_size` (8 px -> 3 stages, 16 -> 4), so
    it yields the same (S/p)^2 grid as the patch embedding.  Overlapping 3x3 receptive fields
    see across patch borders: on the zoo it tells shapes and colours apart better than the
    patch embedding (VQA, captions, detection), while grounding localizes faster on patches.

    Normalization is GroupNorm, not BatchNorm: a micro-batch holds one task's images, and
    running batch statistics would mix tasks as different as digit scans and scenes."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, p = cfg.d_model, cfg.patch_size
        n = p.bit_length() - 1  # stride-2 stages: ModelConfig checked p is a power of two

        def norm(c):
            return nn.GroupNorm(math.gcd(8, c), c)

        def stage(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), norm(cout), nn.GELU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), norm(cout))

        widths = [3] + [min(32 << i, d) for i in range(n - 1)] + [d]
        self.stages = nn.ModuleList(stage(a, b) for a, b in zip(widths, widths[1:]))
        self.skips = nn.ModuleList(nn.Conv2d(a, b, 1, stride=2) for a, b in zip(widths, widths[1:]))
        self.grid = cfg.image_size // p
        self.pos = nn.Parameter(sincos_2d(self.grid, d))

    def forward(self, images, lengths=None):
        x = images
        for stage, skip in zip(self.stages, self.skips):
            x = F.gelu(stage(x) + skip(x))  # [N, C, H/2, W/2]
        if x.shape[-1] != self.grid:
            raise ValueError(f"images of {images.shape[-1]} px do not match the model's image_size")
        x = x.flatten(2).transpose(1, 2) + self.pos  # [N, (S/p)^2, D]
        return x, torch.full((x.shape[0],), x.shape[1], device=x.device)


@ADAPTORS.register("audio_fbank")
class AudioAdaptor(nn.Module):
    """fbank frames [N, T, 80] -> two stride-2 convolutions (T/4 steps) plus learned positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.conv = nn.Sequential(nn.Conv1d(cfg.n_mels, d, 5, stride=2, padding=2), nn.GELU(),
                                  nn.Conv1d(d, d, 5, stride=2, padding=2), nn.GELU())
        self.pos = nn.Embedding(cfg.max_positions, d)

    def forward(self, frames, lengths):
        x = self.conv(frames.transpose(1, 2)).transpose(1, 2)  # [N, ceil(T/4), D]
        if x.shape[1] > self.pos.num_embeddings:
            raise ValueError(f"{x.shape[1]} audio steps exceed max_positions={self.pos.num_embeddings}")
        x = x + self.pos(torch.arange(x.shape[1], device=x.device))
        return x, torch.div(lengths + 3, 4, rounding_mode="floor")


@ADAPTORS.register("video_image_sequence")
class VideoAdaptor(nn.Module):
    """Clips [N, F, 3, S, S] -> per-frame patches plus a frame (time) embedding: F * (S/p)^2 steps.
    Each frame is embedded as an image is: by the patch embedding (OFASys'), or with `model {
    video_stem = resnet }` by image_resnet's convolutional stem, which tells small shapes apart
    that straddle patch borders."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.patches = ResNetAdaptor(cfg) if cfg.video_stem == "resnet" else PatchAdaptor(cfg)
        self.frame = nn.Embedding(cfg.video_frames, cfg.d_model)

    def forward(self, clips, lengths=None):
        N, Fr = clips.shape[:2]
        x, _ = self.patches(clips.flatten(0, 1))  # [N*F, P, D]
        x = x.view(N, Fr, -1, x.shape[-1]) + self.frame(torch.arange(Fr, device=x.device))[None, :, None]
        x = x.flatten(1, 2)  # [N, F*P, D]
        return x, torch.full((N,), x.shape[1], device=x.device)


@ADAPTORS.register("motion_6d")
class MotionAdaptor(nn.Module):
    """Motion features [N, T, F] (normalized `motion_6d` frames) -> an MLP to d_model (OFASys'
    motion_6d adaptor: Linear, GELU, Linear) plus learned positions, one step a frame."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not cfg.motion_dim:
            raise ValueError("a motion adaptor needs the width of its frames (ModelConfig.motion_dim)")
        d = cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(cfg.motion_dim, d), nn.GELU(), nn.Linear(d, d))
        self.pos = nn.Embedding(cfg.max_positions, d)

    def forward(self, frames, lengths):
        if frames.shape[1] > self.pos.num_embeddings:
            raise ValueError(f"{frames.shape[1]} motion frames exceed max_positions={self.pos.num_embeddings}")
        return self.mlp(frames) + self.pos(torch.arange(frames.shape[1], device=frames.device)), lengths


# OFASys' names for image encoders, served here by the patch embedding
ADAPTORS.add("image_vit", PatchAdaptor)
ADAPTORS.add("image_patch_embed", PatchAdaptor)
