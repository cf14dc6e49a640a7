"""Registries of implementations, one per named op kind of the IR (`preprocess.<name>`,
`adapt.<name>`, `target.<head>`, `loss.<name>`, `generate.<name>`, `postprocess.<name>`).

Every stage looks an op's implementation up by the op's name here, never by comparing opcode
strings, and each implementation declares the attributes it reads: `check` holds a loaded
program to that (an attribute the implementation does not read, or a required one missing, is a
compiler/runtime mismatch caught when the program is loaded, not a silent no-op).  Adding a
preprocessor, an adaptor or an output head is registering one more implementation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ofac.ir import Op

from .errors import NotSupportedYet


@dataclass(frozen=True)
class Implementation:
    name: str
    run: object  # what the stage calls: a function, or a class
    attrs: frozenset[str] = frozenset()  # every attribute it reads
    required: frozenset[str] = frozenset()  # those it cannot do without
    extra: dict = field(default_factory=dict)  # stage-specific facts (e.g. what a preprocessor adds to the vocabulary)
    unsupported: str = ""  # set: the compiler accepts the name, the runtime cannot run it yet (this says why)


class Registry:
    """name -> Implementation for one op kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, Implementation] = {}

    def add(self, name: str, run, attrs=(), required=(), unsupported: str = "", **extra) -> Implementation:
        if name in self.entries:
            raise ValueError(f"{self.kind}.{name} is registered twice")
        impl = Implementation(name, run, frozenset(attrs) | frozenset(required), frozenset(required), extra,
                              unsupported)
        self.entries[name] = impl
        return impl

    def register(self, name: str, attrs=(), required=(), **extra) -> Callable:
        """A decorator: `@PREPROCESS.register("image", attrs=(...))`."""
        def wrap(fn):
            self.add(name, fn, attrs, required, **extra)
            return fn
        return wrap

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, op: Op) -> Implementation:
        """The implementation of `op`; NotSupportedYet if there is none yet."""
        return self.named(op.name, f"`{op.opcode}` ({op.where()})")

    def named(self, name: str, what: str | None = None) -> Implementation:
        """The implementation registered as `name`; NotSupportedYet (about `what`) if there is
        none yet."""
        impl = self.entries.get(name)
        if impl is None or impl.unsupported:
            why = impl.unsupported if impl is not None else f"implemented: {', '.join(self.names())}"
            raise NotSupportedYet(what or f"`{self.kind}.{name}`", help=why)
        return impl

    def check(self, op: Op) -> Implementation:
        """`get`, then hold the op's attributes to what the implementation declares."""
        impl = self.get(op)
        given = {k for k, _ in op.attrs}
        missing, unread = sorted(impl.required - given), sorted(given - impl.attrs)
        if missing or unread:
            raise NotSupportedYet(
                f"`{op.opcode}` as written ({op.where()}): " + "; ".join(
                    ([f"missing attribute {', '.join(missing)}"] if missing else [])
                    + ([f"attribute {', '.join(unread)} is not read by the runtime"] if unread else [])),
                help="the program was compiled by another ofac version: compile it with this one")
        return impl


class Attributes(dict):
    """An op's attributes, as every stage reads them (`attributes(op)`).  While `Attributes.reads`
    is a set, each attribute read is noted in it as (opcode, name): a test checks that the
    runtime reads every attribute the lowering emits."""

    reads: set | None = None

    def __init__(self, op: Op):
        super().__init__(op.attrs)
        self.opcode = op.opcode

    def __getitem__(self, name):
        if Attributes.reads is not None:
            Attributes.reads.add((self.opcode, name))
        return super().__getitem__(name)

    def get(self, name, default=None):
        if Attributes.reads is not None:
            Attributes.reads.add((self.opcode, name))
        return super().get(name, default)


def attributes(op: Op) -> Attributes:
    return Attributes(op)
