"""The modality table.  Each module of this package declares one `MODALITY`; adding a
modality is adding a module here, with no edit to the checker or the lowering."""
from __future__ import annotations

import importlib
import pkgutil

from .table import BOTH, DEC, ENC, Adaptor, Modality, Preprocessor, SlotAttr, Target

_SKIP = {"table"}


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
# every adaptor by name (`text` is declared by each token modality, alike)
ADAPTORS: dict[str, Adaptor] = {a.name: a for m in MODALITIES.values() for a in m.adaptors}

__all__ = ["MODALITIES", "MODALITY_NAMES", "Modality", "SlotAttr", "Preprocessor", "Adaptor", "Target",
           "ENC", "DEC", "BOTH", "ADAPTORS"]
