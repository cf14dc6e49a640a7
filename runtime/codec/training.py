"""Training the image tokenizer on a run's images: stage 0 of `ofac run`, before the main model
(the way the run's BPE vocabulary is trained before it).

Reconstruction MSE plus the quantizer's commitment loss, Adam, random batches with replacement;
the codebook follows the encoder by EMA, starts from k-means of the first batch and replaces
codes no batch uses (`ImageCodec`).  A tenth of the images (at most 500) is held out and the
report gives its PSNR and SSIM (torchmetrics) and how many codes the whole set uses.

Shapes: N images, S = size, g = grid."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .image import ImageCodec, ImageCodecConfig


@dataclass(frozen=True)
class CodecTraining:
    steps: int = 1500
    lr: float = 2e-3
    batch_size: int = 64
    seed: int = 1


def to_unit(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> float [N, 3, S, S] in [-1, 1]."""
    x = torch.from_numpy(np.asarray(pixels, dtype=np.float32))  # one new array (decoded images may be read-only)
    return x.permute(0, 3, 1, 2).div_(127.5).sub_(1.0)


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """float [N, 3, S, S] in [-1, 1] -> uint8 [N, S, S, 3]."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def train_codec(pixels: np.ndarray, cfg: ImageCodecConfig, how: CodecTraining = CodecTraining(),
                log=None) -> tuple[ImageCodec, dict]:
    """-> the trained codec (eval mode) and its report.  `pixels`: uint8 [N, S, S, 3];
    `log(step, loss)` is called about twenty times."""
    if len(pixels) < 2:
        raise ValueError(f"an image tokenizer needs at least 2 training images, found {len(pixels)}")
    generator = torch.Generator().manual_seed(how.seed)
    order = torch.randperm(len(pixels), generator=generator).numpy()
    held = min(500, len(pixels) // 10)
    test, train = to_unit(pixels[order[:held]]), to_unit(pixels[order[held:]])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(how.seed)  # k-means initialization and dead-code draws
        codec = ImageCodec(cfg)
        opt = torch.optim.Adam(codec.parameters(), lr=how.lr)
        t0, every = time.perf_counter(), max(1, how.steps // 20)
        codec.train()
        for step in range(1, how.steps + 1):
            x = train[torch.randint(len(train), (how.batch_size,), generator=generator)]
            rec, _, commitment = codec(x)
            loss = F.mse_loss(rec, x) + commitment.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if log is not None and (step % every == 0 or step == how.steps):
                log(step, float(loss.detach()))
    codec.eval()
    report = evaluate_codec(codec, test if held else train)
    report.update(images=len(train), held_out=held, steps=how.steps, seconds=round(time.perf_counter() - t0, 1),
                  codes_used=used_codes(codec, pixels))
    return codec, report


@torch.no_grad()
def evaluate_codec(codec: ImageCodec, images: torch.Tensor) -> dict:
    """Reconstruction PSNR (dB) and SSIM of images [N, 3, S, S] in [-1, 1], as [0, 1] images."""
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    psnr, ssim = PeakSignalNoiseRatio(data_range=1.0), StructuralSimilarityIndexMeasure(data_range=1.0)
    for lo in range(0, len(images), 256):
        x = images[lo:lo + 256]
        rec = (codec.decode(codec.encode(x)) + 1) / 2
        psnr.update(rec, (x + 1) / 2)
        ssim.update(rec, (x + 1) / 2)
    return {"psnr": round(float(psnr.compute()), 2), "ssim": round(float(ssim.compute()), 4)}


@torch.no_grad()
def used_codes(codec: ImageCodec, pixels: np.ndarray) -> int:
    seen = torch.zeros(codec.cfg.codes, dtype=torch.bool)
    for lo in range(0, len(pixels), 512):
        seen[codec.encode(to_unit(pixels[lo:lo + 512])).flatten()] = True
    return int(seen.sum())


def psnr_of(mse: float) -> float:
    """PSNR (dB) of images in [0, 1] from their mean squared error."""
    return 10 * math.log10(1 / max(mse, 1e-12))
