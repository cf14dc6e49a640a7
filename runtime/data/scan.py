"""Bad rows found before the first update.  Every row of every task's training and validation
data is read once, cheaply: its JSON line parsed, every column the task reads present, and each
cell checked by the `cell` check of the preprocessor that reads it (a text is a string or a
number, a box four numbers, a media path names a file).  Nothing is decoded: a corrupt image
stays a diagnostic at its row when training meets it, and `ofac data --all` decodes every row.

All faults are reported at once (the first MAX_SHOWN in full), each naming file, row and
column, so that a user fixes a file in one pass rather than one run per bad row; and before
the run directory is written, so that a bad file never leaves a half-made run behind."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ofac.diagnostics import Diagnostic, Note, Severity

from ..errors import DataError
from ..preprocess import registry
from ..registry import attributes
from .sources import open_source

MAX_SHOWN = 20


@dataclass(frozen=True)
class Reader:
    """How a task reads one column: the preprocessor's cell check and its attributes."""

    column: str
    preprocessor: str
    repeated: bool
    check: object  # (value, attrs, base_dir) -> None, raising ValueError; None: presence only
    attrs: dict


@dataclass(frozen=True)
class Fault:
    task: str
    file: str
    row: int | None
    column: str | None
    message: str
    help: str = ""

    def diagnostic(self) -> Diagnostic:
        """DataError's diagnostic (file, row and column said its way), noting the task."""
        error = DataError("E0104", self.message, file=self.file, row=self.row, column=self.column, help=self.help)
        return replace(error.diagnostic, notes=(Note(f"in the data of task `{self.task}`"),))


class BadRows(DataError):
    """Every fault a scan found (`diagnostics`); the message shows the first MAX_SHOWN."""

    def __init__(self, faults: list[Fault], rows: int):
        self.faults = faults
        first = faults[0]
        super().__init__("E0104", first.message, file=first.file, row=first.row, column=first.column, help=first.help)
        shown = [f.diagnostic().message for f in faults[:MAX_SHOWN]]
        more = f"\n  ... and {len(faults) - MAX_SHOWN} more" if len(faults) > MAX_SHOWN else ""
        head = f"{len(faults)} bad cell{'s' * (len(faults) != 1)} in {rows} rows read before training:"
        self.args = ("\n  ".join([head] + shown) + more,)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [f.diagnostic() for f in self.faults[:MAX_SHOWN]] + ([Diagnostic(
            "E0104", Severity.ERROR, f"... and {len(self.faults) - MAX_SHOWN} more bad cells", None,
            help="fix the ones shown and run again, or set `on_error = skip` on the task to train without them")]
            if len(self.faults) > MAX_SHOWN else [])


def readers(task_ir) -> list[Reader]:
    """The columns a task reads, once each (the first preprocessor that reads it)."""
    preprocessors, out, seen = registry(), [], set()
    for program in task_ir.programs:
        for op in program.of_kind("preprocess"):
            if not op.args:
                continue
            src = program.arg(op)
            if src.kind != "read" or src.get("column") in seen:
                continue
            seen.add(src.get("column"))
            entry = preprocessors.entries.get(op.name)
            out.append(Reader(src.get("column"), op.name, bool(src.get("repeated")),
                              entry.extra.get("cell") if entry is not None else None, attributes(op)))
    return out


def _cell_fault(reader: Reader, value, base_dir: Path | None) -> str | None:
    values = value if reader.repeated else [value]
    if reader.repeated and not isinstance(value, (list, tuple)):
        return f"a repeated slot reads a list, found {type(value).__name__}"
    if reader.check is None:
        return None
    for v in values:
        try:
            reader.check(v, reader.attrs, base_dir)
        except (ValueError, TypeError) as err:
            return str(err)
    return None


def _references(value, attrs, base_dir) -> None:
    if not isinstance(value, (str, list, tuple, dict)):
        raise TypeError(f"reference answers are a list, a dict or a string, found {type(value).__name__}")


def scan_task(name: str, task_ir, sources, faults: list[Fault], split: str = "train") -> int:
    """Append the faults of one task's sources to `faults`; -> the rows read.  Rows scored by a
    metric (not `train`) must also hold the task's `references` column if it names one."""
    rs, rows = readers(task_ir), 0
    if split != "train" and task_ir.get("references") is not None:
        rs.append(Reader(task_ir.get("references"), "references", False, _references, {}))
    for src in sources:
        for j in range(len(src)):
            rows += 1
            try:
                row = src.row(j)
            except DataError as err:
                faults.append(Fault(name, err.file or src.name, err.row, None, err.message, err.diagnostic.help or ""))
                continue
            number = src.row_number(j)
            for r in rs:
                value = row.get(r.column)
                if value is None:
                    have = ", ".join(map(str, row)) or "none"
                    faults.append(Fault(name, src.name, number, r.column, f"missing column `{r.column}`",
                                        f"this row has columns: {have}; the instruction reads `{r.column}`"))
                    continue
                problem = _cell_fault(r, value, src.base_dir)
                if problem is not None:
                    faults.append(Fault(name, src.name, number, r.column, problem,
                                        "the task's `references` setting names this column"
                                        if r.preprocessor == "references" else
                                        f"the `{r.preprocessor}` preprocessor reads this column"))
    return rows


def scan(run, splits=("train", "valid"), log=None) -> int:
    """Read every row of the run's data once (module text).  Tasks with `on_error = skip` have
    their faults logged (their rows will be skipped); the other tasks' faults raise BadRows,
    all at once.  -> the rows read."""
    from .tasks import as_definition

    run = as_definition(run)
    failing: list[Fault] = []
    total = 0
    for task in run.tasks:
        faults: list[Fault] = []
        for split in splits:
            columns = task.settings.get("columns", ())
            sources = [open_source(d, columns, run.base_dir) for d in task.files(split)]
            total += scan_task(task.name, task.ir, sources, faults, split)
        if faults and task.settings.get("on_error", "fail") == "skip":
            if log is not None:
                log(f"task `{task.name}`: {len(faults)} bad row{'s' * (len(faults) != 1)} will be skipped "
                    f"(on_error = skip); the first: {faults[0].diagnostic().message}")
        else:
            failing += faults
    if failing:
        raise BadRows(failing, total)
    return total
