"""The image tokenizer's sizes (no torch: the torch-free runtime reads them too)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ImageCodecConfig:
    size: int = 32  # image side, pixels
    grid: int = 8  # codes per side
    codes: int = 256  # codebook entries
    dim: int = 32  # codebook vector size
    channels: int = 64

    def __post_init__(self):
        factor = self.size // self.grid
        if self.size % self.grid or factor & (factor - 1) or factor < 2:
            raise ValueError(f"an image of {self.size} px into {self.grid} x {self.grid} codes: size / grid must "
                             f"be a power of two of at least 2 (one stride-2 stage per halving)")

    @property
    def stages(self) -> int:
        return int(math.log2(self.size // self.grid))

    def to_dict(self) -> dict:
        return asdict(self)
