"""The `ofac` command line.  Thin: each command parses its options, calls one library function
and renders what it returns.  The compiler's commands (`language.py`) run without the runtime;
the runtime's (`runs.py`) import their library function when they run, so `ofac check`
starts without numpy or torch."""
from __future__ import annotations

import sys

from . import language, runs  # noqa: F401  (each registers its commands on `app`)
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
