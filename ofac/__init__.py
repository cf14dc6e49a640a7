"""ofac: a compiler for declarative multi-modal, multi-task learning.

`import ofac` is pure Python (lark only): the compiler never imports torch."""
from .api import GeneralistModel, OFASys, Task, Trainer, load
from .compiler import CompiledFile, compile_file, compile_instruction, compile_source
from .diagnostics import CompileError, Diagnostic, Severity
from .ir import Op, Program, TaskIR

__version__ = "0.1.0"

__all__ = ["Task", "Trainer", "GeneralistModel", "OFASys", "compile_file", "compile_instruction", "compile_source", "load", "CompiledFile", "CompileError",
           "Diagnostic", "Severity", "Op", "Program", "TaskIR", "__version__"]
