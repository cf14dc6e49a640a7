"""Diagnostics: the one way ofac reports a user mistake, at any stage."""
from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict:
        line = column = end_line = end_column = None
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


@dataclass
class Diagnostics:
    """A collector: passes append, the driver decides when to stop."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None = None, **kw) -> None:
        self.items.append(Diagnostic(code, Severity.ERROR, message, span, **kw))

    def warning(self, code: str, message: str, span: Span | None = None, **kw) -> None:
        self.items.append(Diagnostic(code, Severity.WARNING, message, span, **kw))

    def extend(self, other: "Diagnostics | list[Diagnostic]") -> None:
        self.items.extend(other.items if isinstance(other, Diagnostics) else other)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class CompileError(Exception):
    """Raised by the public API when compilation produced errors."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        from .render import render_plain

        super().__init__("\n" + render_plain(self.diagnostics))
