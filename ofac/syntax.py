"""The AST: frozen dataclasses produced by the parser, spans excluded from equality."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .source import Span, span_field

# --------------------------------------------------------------------------- instruction

@dataclass(frozen=True)
class Text:
    """A run of plain text between slots, stripped as OFASys strips it."""

    text: str
    span: Span = span_field()


@dataclass(frozen=True)
class Marker:
    """A legacy `<BOS>` / `<EOS>` marker (deprecated: BOS/EOS are automatic)."""

    kind: str  # "BOS" | "EOS"
    span: Span = span_field()


@dataclass(frozen=True)
class Attr:
    key: str
    value: str | None = None  # None for a flag such as `closed_set`
    span: Span = span_field()
    value_span: Span | None = span_field()


@dataclass(frozen=True)
class Slot:
    """`[MODALITY:column,attr,key=value]`; names are kept as written, the checker resolves them."""

    modality: str
    column: str | None = None
    attrs: tuple[Attr, ...] = ()
    span: Span = span_field()
    modality_span: Span = span_field()
    column_span: Span | None = span_field()

    def attr(self, key: str) -> Attr | None:
        for a in self.attrs:
            if a.key == key:
                return a
        return None


@dataclass(frozen=True)
class Repeat:
    """`( ... )*`: the group repeats once per element of its columns' lists."""

    items: tuple["Item", ...]
    span: Span = span_field()


Item = Union[Text, Marker, Slot, Repeat]


@dataclass(frozen=True)
class Template:
    """One `encoder -> decoder` alternative.  `sides` has one entry per `->`-separated
    part as written; a well-formed template has exactly two (the checker says so)."""

    sides: tuple[tuple[Item, ...], ...]
    span: Span = span_field()
    arrow_spans: tuple[Span, ...] = span_field()

    @property
    def encoder(self) -> tuple[Item, ...]:
        return self.sides[0]

    @property
    def decoder(self) -> tuple[Item, ...]:
        return self.sides[1] if len(self.sides) > 1 else ()


@dataclass(frozen=True)
class Instruction:
    """One or more templates joined by `|||`."""

    templates: tuple[Template, ...]
    span: Span = span_field()


# --------------------------------------------------------------------------- task file

@dataclass(frozen=True)
class Scalar:
    """A setting value as written; its type comes from the settings schema."""

    text: str
    quoted: bool = False
    span: Span = span_field()


@dataclass(frozen=True)
class ListValue:
    items: tuple["Value", ...]
    span: Span = span_field()


Value = Union[Scalar, ListValue]


@dataclass(frozen=True)
class Pair:
    key: str
    value: Value
    span: Span = span_field()
    key_span: Span = span_field()


@dataclass(frozen=True)
class InstructionLine:
    """`instruction: ...` — the rest of the line, parsed as an instruction."""

    instruction: Instruction | None  # None when it failed to parse
    raw: str = field(default="", compare=False)  # as written; the parsed form is what counts
    span: Span = span_field()


@dataclass(frozen=True)
class Block:
    kind: str
    label: str | None
    entries: tuple["Entry", ...]
    span: Span = span_field()
    kind_span: Span = span_field()
    label_span: Span | None = span_field()


Entry = Union[Pair, InstructionLine, Block]


@dataclass(frozen=True)
class TaskFile:
    blocks: tuple[Block, ...]
    source_name: str = field(default="", compare=False)
