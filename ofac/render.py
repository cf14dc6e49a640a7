"""Rendering diagnostics: rustc-style for people (with rich), JSON for tools."""
from __future__ import annotations

import json

from rich.text import Text

from .diagnostics import Diagnostic, Severity
from .source import Span

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow"}
_GUTTER = "bold blue"


def render(d: Diagnostic) -> Text:
    out = Text()
    out.append(f"{d.severity.value}[{d.code}]", _STYLE[d.severity])
    out.append(f": {d.message}\n", "bold")
    if d.span is not None:
        width = len(str(d.span.source.line_col(d.span.end)[0])) + 1
        _snippet(out, d.span, d.label, "^", _STYLE[d.severity], width)
    elif d.file:
        out.append("  --> ", _GUTTER)
        out.append(f"{d.file}" + (f":{d.line}" if d.line else "") + "\n")
        width = 2
    else:
        width = 2
    for note in d.notes:
        if note.span is not None:
            out.append(" " * width + "= ", _GUTTER)
            out.append("note", "bold")
            out.append(f": {note.message}\n")
            _snippet(out, note.span, "", "-", _GUTTER, width)
        else:
            out.append(" " * width + "= ", _GUTTER)
            out.append("note", "bold")
            out.append(f": {note.message}\n")
    if d.help:
        out.append(" " * width + "= ", _GUTTER)
        out.append("help", "bold")
        out.append(f": {d.help}\n")
    return out


def _snippet(out: Text, span: Span, label: str, mark: str, style: str, width: int) -> None:
    src = span.source
    line, col = src.line_col(span.start)
    end_line, end_col = src.line_col(span.end)
    text = src.line_text(line)
    stop = end_col if end_line == line else len(text) + 1
    carets = max(1, stop - col)
    out.append(" " * (width - 1) + "--> ", _GUTTER)
    out.append(f"{src.name}:{line}:{col}\n")
    out.append(" " * width + "|\n", _GUTTER)
    out.append(f"{line:>{width - 1}} | ", _GUTTER)
    out.append(text.expandtabs(1) + "\n")
    out.append(" " * width + "| ", _GUTTER)
    out.append(" " * (col - 1) + mark * carets + (f" {label}" if label else ""), style)
    out.append("\n")


def summary(diags: list[Diagnostic]) -> str:
    errors = sum(d.is_error for d in diags)
    warnings = len(diags) - errors
    parts = [f"{errors} error{'s' * (errors != 1)}"] if errors else []
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    return ", ".join(parts)


def render_plain(diags: list[Diagnostic]) -> str:
    return "\n".join(render(d).plain for d in diags)


def render_json(diags: list[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diags], indent=2, ensure_ascii=False)
