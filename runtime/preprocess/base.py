"""What preprocessors receive and return, and the geometry an image's boxes follow.  No torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..registry import Registry


def preprocessors() -> Registry:
    """A module's own registry of `preprocess.<name>` implementations (merged by `registry()`)."""
    return Registry("preprocess")


@dataclass
class Context:
    """Per-example context: the vocabulary, split, an RNG seeded per example, media root."""

    vocab: object
    split: str  # train | valid | test
    rng: np.random.Generator
    base_dir: Path | None = None
    resources: dict | None = None  # the run's learned codecs by modality ("image": ImageTokenizer)

    @property
    def training(self) -> bool:
        return self.split == "train"


@dataclass
class Tokens:
    """A token piece: `ids` is what the model is trained to produce; `inputs` is what it is fed
    (masked or noised at train time; the same list when clean)."""

    ids: list[int]
    inputs: list[int] | None = None
    meta: dict | None = None  # what scoring needs beyond the ids (a target image's pixels)

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

    tensor: object  # torch.Tensor, or a numpy array in the torch-free runtime
    meta: dict = field(default_factory=dict)
    norm: tuple | None = None
    mask_border: int = 0


@dataclass(frozen=True)
class Geometry:
    """Where a preprocessed image's pixels came from: the region `crop` (x0, y0, x1, y1) of the
    original image, in its pixels, resized to `size` x `size`, then mirrored if `flipped`.  A
    box of the image follows it (`forward`), and a generated box goes back (`inverse`)."""

    orig_size: tuple[int, int]  # (width, height)
    crop: tuple[float, float, float, float]
    size: int
    flipped: bool = False

    @classmethod
    def whole(cls, w: int, h: int, size: int) -> "Geometry":
        return cls((w, h), (0.0, 0.0, float(w), float(h)), size)

    def forward(self, box: list[float]) -> list[float]:
        """A box in original pixels -> in the preprocessed image's pixels, clipped to it."""
        x0, y0, x1, y1 = self.crop
        sx, sy = self.size / (x1 - x0), self.size / (y1 - y0)
        out = [(box[0] - x0) * sx, (box[1] - y0) * sy, (box[2] - x0) * sx, (box[3] - y0) * sy]
        out = [min(float(self.size), max(0.0, c)) for c in out]
        if self.flipped:
            out = [self.size - out[2], out[1], self.size - out[0], out[3]]
        return out

    def inverse(self, box: list[float]) -> list[float]:
        """A box in the preprocessed image's pixels -> in original pixels."""
        if self.flipped:
            box = [self.size - box[2], box[1], self.size - box[0], box[3]]
        x0, y0, x1, y1 = self.crop
        sx, sy = (x1 - x0) / self.size, (y1 - y0) / self.size
        return [x0 + box[0] * sx, y0 + box[1] * sy, x0 + box[2] * sx, y0 + box[3] * sy]


def centre_square(w: int, h: int, fraction: float = 1.0) -> tuple[float, float, float, float]:
    """The centred square of side `fraction` * the shorter side, on whole pixels."""
    side = max(1, int(round(fraction * min(w, h))))
    x0, y0 = (w - side) // 2, (h - side) // 2
    return (float(x0), float(y0), float(x0 + side), float(y0 + side))


# the region an image preprocessor keeps at evaluation (training draws its own): `image` resizes
# the whole image to a square (OFASys: aspect ratio not kept); `imagenet` keeps the centre 87.5%
# of the shorter side (timm's evaluation crop); `imagepretrain` the centred square
EVAL_REGION = {"image": lambda w, h: (0.0, 0.0, float(w), float(h)),
               "imagenet": lambda w, h: centre_square(w, h, 0.875),
               "imagepretrain": lambda w, h: centre_square(w, h)}

IMAGE_ATTRS = ("size", "mean", "std", "interpolation", "mask_ratio")
VIDEO_ATTRS = ("num_frames", "size", "mean", "std")


def mask_border(attrs: dict) -> int:
    """Image infilling: the border kept around the centred square `mask_ratio` blanks."""
    return int(attrs["size"] * (1 - attrs["mask_ratio"]) / 2) if attrs.get("mask_ratio") else 0
