"""The modality table.  Each module of this package declares one `MODALITY`; adding a
modality is adding a module here, with no edit to the checker or the lowering."""
from __future__ import annotations

import importlib
import pkgutil

from .spec import BOTH, DEC, ENC, Adaptor, AttrSpec, Modality, Preprocessor, Target

_SKIP = {"spec"}


def _discover() -> dict[str, Modality]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _SKIP:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "MODALITY"):
            found.append(module.MODALITY)
    return {m.name: m for m in sorted(found, key=lambda m: m.order)}


MODALITIES: dict[str, Modality] = _discover()
MODALITY_NAMES: tuple[str, ...] = tuple(MODALITIES)

__all__ = ["MODALITIES", "MODALITY_NAMES", "Modality", "AttrSpec", "Preprocessor", "Adaptor", "Target",
           "ENC", "DEC", "BOTH"]
