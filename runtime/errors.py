"""Runtime errors that are user mistakes carry a Diagnostic (file, row, column, cause, fix)."""
from __future__ import annotations

from ofac.diagnostics import Diagnostic, Severity


class RunError(Exception):
    """Any user-facing runtime failure; `diagnostic` says what, where and how to fix it."""

    diagnostic: Diagnostic

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """Every diagnostic of the failure (most carry one)."""
        return [self.diagnostic]


class DataError(RunError):
    """A bad data row or file.  `diagnostic` names the file, the row and column, and a fix."""

    def __init__(self, code: str, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None, help: str = "", op: str | None = None):
        self.file, self.row, self.column, self.message = file, row, column, message
        where = []
        if file:
            where.append(file)
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column `{column}`")
        text = message if not where else f"{message} ({', '.join(where)})"
        notes = ()
        if op:
            from ofac.diagnostics import Note

            notes = (Note(f"while running IR op {op}"),)
        self.diagnostic = Diagnostic(code, Severity.ERROR, text, None, notes=notes, help=help, file=file, line=row)
        super().__init__(text + (f"\n  help: {help}" if help else ""))


class NotSupportedYet(DataError):
    """A construct the compiler accepts but the runtime cannot execute yet."""

    def __init__(self, what: str, *, help: str = ""):
        super().__init__("E0100", f"{what} is not supported by the ofac runtime yet", help=help)


class ResourceError(RunError):
    """The model or a batch does not fit the device."""

    def __init__(self, message: str, help: str):
        self.diagnostic = Diagnostic("E0106", Severity.ERROR, message, None, help=help)
        super().__init__(f"{message}\n  help: {help}")
