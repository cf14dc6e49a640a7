"""The implementations of `preprocess.<name>` ops, one module per modality, each with its own
`REGISTRY`.  Adding a preprocessor is registering it in its modality's module.

Two registries share the token modalities (TEXT, STRUCT, PHONE, BOX, image codes: pure Python
and numpy)
and differ in the media ones: `registry("torch")` decodes images, audio and video into torch
tensors with torchvision/torchaudio (the training data path); `registry("numpy")` does the same
steps with Pillow and numpy (`numpy_media`: the torch-free ONNX runtime).  Nothing here imports
torch until the torch registry is asked for."""
from __future__ import annotations

import importlib

from ..registry import Registry

_TOKENS = ("text", "struct", "phone", "box", "motion", "image_codes")
_MEDIA = {"torch": ("image", "audio", "video"), "numpy": ("numpy_media",)}
_registries: dict[str, Registry] = {}


def registry(media: str = "torch") -> Registry:
    """Every preprocessor, with the media preprocessors of `media` (torch | numpy)."""
    if media not in _registries:
        merged = Registry("preprocess")
        for name in _TOKENS + _MEDIA[media]:
            for impl in importlib.import_module(f"{__name__}.{name}").REGISTRY.entries.values():
                merged.entries[impl.name] = impl
        _registries[media] = merged
    return _registries[media]
