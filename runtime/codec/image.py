"""The image tokenizer ofac trains itself (OFASys loads a pretrained VQGAN instead): a small
convolutional VQ-VAE.  An image of `size` x `size` pixels becomes `grid` x `grid` codes of a
`codes`-entry codebook; the decoder turns codes back into pixels.

The quantizer is vector-quantize-pytorch's `VectorQuantize` (an EMA codebook, k-means
initialization, dead-code expiry), after VQ-VAE (arXiv 1711.00937: EMA decay 0.99, commitment
0.25).  Encoder: stride-2 4x4 convolutions down to the grid, two residual blocks, a 1x1
projection to the codebook's dimension; the decoder mirrors it with transposed convolutions.

Shapes: N images, S = size, g = grid, D = the codebook's dimension, C = channels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ImageCodecConfig

__all__ = ["ImageCodec", "ImageCodecConfig"]


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 1))

    def forward(self, x):
        return x + self.body(x)


class ImageCodec(nn.Module):
    def __init__(self, cfg: ImageCodecConfig):
        from vector_quantize_pytorch import VectorQuantize

        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        down = [nn.Conv2d(3 if i == 0 else c, c, 4, stride=2, padding=1) for i in range(cfg.stages)]
        self.encoder = nn.Sequential(*[m for d in down for m in (d, nn.ReLU())][:-1], _Residual(c), _Residual(c),
                                     nn.ReLU(), nn.Conv2d(c, cfg.dim, 1))
        up = [nn.ConvTranspose2d(c, c if i < cfg.stages - 1 else 3, 4, stride=2, padding=1)
              for i in range(cfg.stages)]
        self.decoder = nn.Sequential(nn.Conv2d(cfg.dim, c, 3, padding=1), _Residual(c), _Residual(c), nn.ReLU(),
                                     *[m for u in up for m in (u, nn.ReLU())][:-1])
        self.quantizer = VectorQuantize(dim=cfg.dim, codebook_size=cfg.codes, decay=0.99, commitment_weight=0.25,
                                        kmeans_init=True, threshold_ema_dead_code=2, accept_image_fmap=True)

    def forward(self, images):
        """images [N, 3, S, S] in [-1, 1] -> (reconstruction [N, 3, S, S], codes [N, g, g], commitment loss)."""
        z = self.encoder(images)  # [N, D, g, g]
        quantized, codes, commitment = self.quantizer(z)
        return self.decoder(quantized), codes, commitment

    def encode(self, images) -> torch.Tensor:
        """images [N, 3, S, S] in [-1, 1] -> codes [N, g*g] (row-major): each position's nearest
        codebook vector (what the quantizer picks, written out so that it exports to ONNX)."""
        z = self.encoder(images).flatten(2).transpose(1, 2)  # [N, g*g, D]
        book = self.codebook()
        distances = (z * z).sum(-1, keepdim=True) - 2 * z @ book.t() + (book * book).sum(-1)  # [N, g*g, K]
        return distances.argmin(-1)

    def codebook(self) -> torch.Tensor:
        """[codes, D]: the vector of each code."""
        return self.quantizer.codebook.reshape(self.cfg.codes, self.cfg.dim)

    def decode(self, codes) -> torch.Tensor:
        """codes [N, g*g] -> images [N, 3, S, S] in [-1, 1] (clamped)."""
        g = self.cfg.grid
        vectors = F.embedding(codes, self.codebook())  # [N, g*g, D]
        z = vectors.transpose(1, 2).reshape(codes.shape[0], -1, g, g)  # [N, D, g, g]
        return self.decoder(z).clamp(-1, 1)
