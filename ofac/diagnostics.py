"""Diagnostics: the one way ofac reports a user mistake, at any stage."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .source import Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Note:
    """A secondary message, optionally pointing at another place."""

    message: str
    span: Span | None = None


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    span: Span | None = None
    label: str = ""
    notes: tuple[Note, ...] = ()
    help: str = ""
    file: str | None = None  # for diagnostics without a span (e.g. a missing file)
    line: int | None = None  # with `file`: the line or data row (1-based)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict:
        line, column, end_line, end_column = self.line, None, None, None
        file = self.file
        if self.span is not None:
            src = self.span.source
            file = src.name
            line, column = src.line_col(self.span.start)
            end_line, end_column = src.line_col(self.span.end)
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "file": file,
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "label": self.label,
            "help": self.help,
            "notes": [
                {"message": n.message, **({"at": n.span.location()} if n.span else {})}
                for n in self.notes
            ],
        }


class Diagnostics:
    """A collector: passes append, the driver decides when to stop.  Keeps an error count
    so that passes can ask "did this step add errors?" in constant time."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.error_count = 0

    def add(self, d: Diagnostic) -> None:
        self.items.append(d)
        self.error_count += d.is_error

    def error(self, code: str, message: str, span: Span | None = None, **kw) -> None:
        self.add(Diagnostic(code, Severity.ERROR, message, span, **kw))

    def warning(self, code: str, message: str, span: Span | None = None, **kw) -> None:
        self.add(Diagnostic(code, Severity.WARNING, message, span, **kw))

    def duplicate(self, code: str, message: str, span: Span, first: Span, first_label: str,
                  help: str = "keep one of them") -> None:
        """Something given a second time: point at it and at the first one."""
        self.error(code, message, span, label="second time", notes=(Note(first_label, first),), help=help)

    def extend(self, other: "Diagnostics | list[Diagnostic]") -> None:
        for d in (other.items if isinstance(other, Diagnostics) else other):
            self.add(d)

    @property
    def has_errors(self) -> bool:
        return self.error_count > 0

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
