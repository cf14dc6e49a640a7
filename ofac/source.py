"""Source text and spans: every AST node and IR op points back into one of these."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class SourceFile:
    """A named piece of source text (a `.ofa` file or an instruction string)."""

    name: str
    text: str
    first_line: int = 1  # the line number of the text's first line (an instruction inside a file)
    _line_starts: tuple[int, ...] = field(init=False, repr=False)
    _locations: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        starts = [0] + [i + 1 for i, ch in enumerate(self.text) if ch == "\n"]
        object.__setattr__(self, "_line_starts", tuple(starts))
        object.__setattr__(self, "_locations", {})  # (start, end) -> "file:l:c-l:c"

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + self.first_line, offset - self._line_starts[line] + 1

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        start = self._line_starts[line - self.first_line]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]


@dataclass(frozen=True)
class Span:
    """A half-open character range [start, end) of a source file."""

    source: SourceFile
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.source.text[self.start:self.end]

    def to(self, other: "Span") -> "Span":
        """The span covering self and other."""
        return Span(self.source, min(self.start, other.start), max(self.end, other.end))

    def location(self) -> str:
        """`file:line:col-line:col`, the form stored in IR and shown to users."""
        cache = self.source._locations
        key = (self.start, self.end)
        loc = cache.get(key)
        if loc is None:
            l0, c0 = self.source.line_col(self.start)
            l1, c1 = self.source.line_col(self.end)
            loc = cache[key] = f"{self.source.name}:{l0}:{c0}-{l1}:{c1}"
        return loc


def span_field():
    """A dataclass field for spans: kept for diagnostics, excluded from equality."""
    return field(default=None, compare=False, repr=False)
