"""Run-directory files that need no torch: atomic writes, JSON with diagnostics, and the error
a run directory or checkpoint that cannot be used raises.  Shared by the trainer, the
checkpoint code and the torch-free ONNX runtime."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ofac.diagnostics import Diagnostic, Severity

from ..errors import RunError


class CheckpointError(RunError):
    """A run directory or checkpoint that cannot be used; carries a diagnostic."""

    def __init__(self, code: str, message: str, path: Path, help: str = ""):
        self.diagnostic = Diagnostic(code, Severity.ERROR, message, None, help=help, file=str(path))
        super().__init__(f"{message} ({path})" + (f"\n  help: {help}" if help else ""))


def write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError("E0110", "missing file in the run directory", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError("E0111", f"corrupt JSON: {err}", path) from None
