"""The checked AST: slots with resolved modality, side, column, preprocessor, adaptor and
typed attributes.  Produced by ofac.check, consumed by ofac.lower."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .modalities import MODALITIES
from .source import Span, span_field
from .syntax import Marker, Text


@dataclass(frozen=True)
class TypedSlot:
    modality: str
    side: str  # encoder | decoder
    column: str
    preprocess: str
    adaptor: str
    attrs: tuple[tuple[str, object], ...] = ()  # typed values of the attributes written
    repeated: bool = False
    span: Span = span_field()
    column_span: Span | None = span_field()

    def get(self, name: str, default=None):
        return next((v for k, v in self.attrs if k == name), default)

    @property
    def token_like(self) -> bool:
        return MODALITIES[self.modality].token_like


@dataclass(frozen=True)
class TypedRepeat:
    items: tuple["TypedItem", ...]
    span: Span = span_field()


TypedItem = Union[TypedSlot, TypedRepeat, Text, Marker]


@dataclass(frozen=True)
class TypedTemplate:
    encoder: tuple[TypedItem, ...]
    decoder: tuple[TypedItem, ...]
    span: Span = span_field()

    def slots(self):
        for item in self.encoder + self.decoder:
            yield from slots_of(item)


def slots_of(item):
    """The data slots of an item, looking inside repetition groups."""
    if isinstance(item, TypedSlot):
        yield item
    elif isinstance(item, TypedRepeat):
        for inner in item.items:
            yield from slots_of(inner)


@dataclass(frozen=True)
class Segment:
    """A stretch of one side that becomes one encoder/decoder input: either a fused token
    group (plain text and adjacent TEXT/BOX/PHONE/STRUCT slots, as OFASys groups them) or
    one non-token slot (IMAGE, AUDIO, VIDEO, MOTION)."""

    kind: str  # tokens | slot
    items: tuple[TypedItem, ...]

    def data_slots(self) -> list[TypedSlot]:
        return [s for it in self.items for s in slots_of(it)]

    def signature(self) -> str:
        if self.kind == "slot":
            s = self.items[0]
            return f"{s.modality}({s.preprocess}, {s.adaptor})"
        return "tokens"


def segments(items: tuple[TypedItem, ...]) -> list[Segment]:
    out: list[Segment] = []
    group: list[TypedItem] = []
    for item in items:
        if isinstance(item, TypedSlot) and not item.token_like:
            if group:
                out.append(Segment("tokens", tuple(group)))
                group = []
            out.append(Segment("slot", (item,)))
        else:
            group.append(item)
    if group:
        out.append(Segment("tokens", tuple(group)))
    return out


@dataclass(frozen=True)
class CheckedTask:
    name: str
    templates: tuple[TypedTemplate, ...]
    settings: tuple[tuple[str, object], ...] = ()
    generate: tuple[tuple[str, object], ...] = ()
    span: Span | None = span_field()

    def setting(self, name: str, default=None):
        return next((v for k, v in self.settings if k == name), default)


@dataclass(frozen=True)
class CheckedFile:
    tasks: tuple[CheckedTask, ...]
    model: tuple[tuple[str, object], ...] = ()
    train: tuple[tuple[str, object], ...] = ()
    export: tuple[tuple[str, object], ...] = ()
    image_tokenizer: tuple[tuple[str, object], ...] = ()

    def task(self, name: str) -> CheckedTask | None:
        return next((t for t in self.tasks if t.name == name), None)
