"""Preprocessors by IR op name (`preprocess.<name>`), one module per modality.  Adding one
is adding a module here with a PREPROCESSORS dict.

Two registries share the token modalities (TEXT, STRUCT, PHONE, BOX: pure Python and numpy)
and differ in the media ones: `registry("torch")` decodes images, audio and video into torch
tensors with torchvision/torchaudio (the training data path); `registry("numpy")` does the same
steps with Pillow and numpy (the torch-free ONNX runtime, `ofac.runtime.deploy`).  Nothing here
imports torch until the torch registry is asked for."""
from __future__ import annotations

import importlib

from .text import not_yet

# modules (relative to ofac.runtime) whose PREPROCESSORS a registry holds
_TOKENS = (".preprocess.text", ".preprocess.struct", ".preprocess.phone", ".preprocess.motion")
_MEDIA = {"torch": (".preprocess.image", ".preprocess.audio", ".preprocess.video"), "numpy": (".deploy.media",)}
_registries: dict[str, dict] = {}


def registry(media: str = "torch") -> dict:
    """op name -> preprocessor, with the media preprocessors of `media` (torch | numpy)."""
    if media not in _registries:
        out: dict = {}
        for module in _TOKENS + _MEDIA[media]:
            out.update(importlib.import_module(module, __package__.rsplit(".", 1)[0]).PREPROCESSORS)
        out["image_vqgan"] = not_yet("image_vqgan", "image generation needs a VQGAN tokenizer, not built yet")
        _registries[media] = out
    return _registries[media]


def __getattr__(name: str):
    if name == "REGISTRY":  # the training registry, built on first use
        return registry("torch")
    raise AttributeError(name)
