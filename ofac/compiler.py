"""The driver: source -> parse -> check -> lower, stopping at the first stage with errors.
All errors of a stage are collected and returned together."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .check import check_instruction
from .check_file import check_file
from .diagnostics import Diagnostic, Diagnostics
from .errors import CompileError
from .ir import TaskIR
from .lower import lower_task
from .parse import parse_file, parse_instruction
from .settings import TASK
from .source import SourceFile
from .typed import CheckedFile, CheckedTask


@dataclass(frozen=True)
class CompiledFile:
    path: str
    checked: CheckedFile
    tasks: tuple[TaskIR, ...]

    def task(self, name: str) -> TaskIR | None:
        return next((t for t in self.tasks if t.task == name), None)


def compile_instruction(text: str, task: str = "instruction", name: str = "<instruction>",
                        model: tuple = (), first_line: int = 1,
                        image_tokenizer: tuple = ()) -> tuple[TaskIR | None, list[Diagnostic]]:
    """Compile one instruction string (the Python API and `--instruction`); `model` and
    `image_tokenizer` are the settings of those blocks it is compiled for."""
    instr, diags = parse_instruction(text, SourceFile(name, text, first_line))
    if instr is None:
        return None, diags.items
    typed = check_instruction(instr, diags)
    if typed is None:
        return None, diags.items
    defaults = tuple((s.name, s.default) for s in TASK.settings if s.default is not None)
    return lower_task(CheckedTask(task, typed, defaults), model, image_tokenizer), diags.items


def compile_source(text: str, name: str = "<file>", base_dir: Path | None = None, check_data: bool = True,
                   lower: bool = True) -> tuple[CompiledFile | None, list[Diagnostic]]:
    """Compile the text of a `.ofa` file; data files resolve against `base_dir`.  With
    `lower=False` it stops after type checking (what `ofac check` needs: lowering never
    finds a user mistake), and the result has no tasks' IR."""
    tf, diags, _ = parse_file(text, name)
    if tf is None:
        return None, diags.items
    checked = check_file(tf, diags, base_dir, check_data)
    if checked is None or diags.has_errors:
        return None, diags.items
    tasks = tuple(lower_task(t, checked.model, checked.image_tokenizer) for t in checked.tasks) if lower else ()
    return CompiledFile(name, checked, tasks), diags.items


def check_file_at(path: str | Path, check_data: bool = True) -> list[Diagnostic]:
    """Every diagnostic of a task file: parse and type check, no lowering (`ofac check`)."""
    return compile_file(path, check_data, lower=False)[1]


def compile_file(path: str | Path, check_data: bool = True,
                 lower: bool = True) -> tuple[CompiledFile | None, list[Diagnostic]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        diags = Diagnostics()
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        diags.error("E0044", f"cannot read `{path}`: {reason}", file=str(path),
                    help="check the path; task files are UTF-8 text")
        return None, diags.items
    return compile_source(text, str(path), path.parent, check_data, lower)


def load(path: str | Path) -> CompiledFile:  # `ofac.load` also opens run directories (api.load)
    """Compile a task file or raise CompileError carrying every diagnostic."""
    compiled, diags = compile_file(path)
    if compiled is None:
        raise CompileError(diags)
    return compiled
