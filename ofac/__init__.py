"""ofac: a compiler for declarative multi-modal, multi-task learning.

`import ofac` is the compiler alone (pure Python, lark): it never imports the runtime, so
neither numpy nor torch.  The OFASys-style API (`Task`, `Trainer`, `GeneralistModel`, `OFASys`,
`load`) lives in `ofac.api`, which `ofac.<name>` imports on first use."""
from .compiler import CompiledFile, compile_file, compile_instruction, compile_source
from .diagnostics import Diagnostic, Severity
from .errors import CompileError
from .ir import Op, Program, TaskIR

__version__ = "0.1.0"

_API = ("Task", "Trainer", "GeneralistModel", "OFASys", "load")

__all__ = [*_API, "compile_file", "compile_instruction", "compile_source", "CompiledFile", "CompileError",
           "Diagnostic", "Severity", "Op", "Program", "TaskIR", "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ofac' has no attribute {name!r}")
