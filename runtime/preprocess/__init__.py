"""Preprocessors by IR op name (`preprocess.<name>`), one module per modality.  Adding one
is adding a module here with a PREPROCESSORS dict."""
from __future__ import annotations

from . import audio, image, motion, phone, struct, text, video
from .text import not_yet

REGISTRY = {}
for _module in (text, image, audio, video, struct, phone, motion):
    REGISTRY.update(_module.PREPROCESSORS)
REGISTRY["image_vqgan"] = not_yet("image_vqgan", "image generation needs a VQGAN tokenizer, not built yet")
