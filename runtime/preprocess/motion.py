"""MOTION: reserved.  The compiler accepts MOTION slots; the runtime says so clearly."""
from __future__ import annotations

from .base import preprocessors

REGISTRY = preprocessors()
REGISTRY.add("motion_6d", None, unsupported="MOTION tasks compile and can be explained, but cannot be trained or "
             "run yet")
