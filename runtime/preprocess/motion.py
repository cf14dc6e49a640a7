"""MOTION: reserved.  The compiler accepts MOTION slots; the runtime says so clearly."""
from __future__ import annotations

from ..errors import NotSupportedYet


def motion_6d(value, attrs, ctx):
    raise NotSupportedYet("the MOTION modality (preprocess=motion_6d)",
                          help="MOTION tasks compile and can be explained, but cannot be trained or run yet")


PREPROCESSORS = {"motion_6d": motion_6d}
