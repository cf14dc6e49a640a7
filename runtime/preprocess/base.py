"""What preprocessors receive and return."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Context:
    """Per-example context: the vocabulary, split, an RNG seeded per example, media root."""

    vocab: object
    split: str  # train | valid | test
    rng: np.random.Generator
    base_dir: Path | None = None

    @property
    def training(self) -> bool:
        return self.split == "train"


@dataclass
class Tokens:
    """A token piece: `ids` is what the model is trained to produce; `inputs` is what it is fed
    (masked or noised at train time; the same list when clean)."""

    ids: list[int]
    inputs: list[int] | None = None

    @property
    def fed(self) -> list[int]:
        return self.ids if self.inputs is None else self.inputs


@dataclass
class Features:
    """A non-token input (image, audio, video) and what postprocessing needs to undo.

    Images and video frames stay uint8 until they reach the device: `norm` is the (mean, std)
    to apply there and `mask_border` the border kept by image infilling (0: no mask).  This
    ships a quarter of the bytes from workers and to the GPU, and normalizes a whole batch
    in one vectorized op instead of one image at a time."""

    tensor: object  # torch.Tensor
    meta: dict = field(default_factory=dict)
    norm: tuple | None = None
    mask_border: int = 0
