"""The IR's data types.  A `Program` is one template of a task lowered to a flat, ordered tuple
of SSA ops; a `TaskIR` is a task: its alternative templates (`|||`, one drawn per sample, all
of one shape) plus metadata.  What each op kind means is in `kinds.py`."""
from __future__ import annotations

from dataclasses import dataclass, field

IR_VERSION = 2


@dataclass(frozen=True)
class Op:
    """One SSA op.  `kind` says what it does (`preprocess`, a kind of `kinds.OP_KINDS`); `name`
    says which registered implementation does it (`image`), for kinds that have several.  The
    text form joins them: `preprocess.image`."""

    id: int
    kind: str
    name: str = ""
    args: tuple[int, ...] = ()
    attrs: tuple[tuple[str, object], ...] = ()
    span: str | None = field(default=None, compare=False)

    @property
    def opcode(self) -> str:
        return f"{self.kind}.{self.name}" if self.name else self.kind

    def get(self, attr: str, default=None):
        return next((v for k, v in self.attrs if k == attr), default)

    def where(self) -> str:
        """`%3 preprocess.image from file.ofa:1:2-1:12`, for runtime messages."""
        return f"%{self.id} {self.opcode}" + (f" from {self.span}" if self.span else "")


@dataclass(frozen=True)
class Program:
    task: str
    ops: tuple[Op, ...]

    def of_kind(self, kind: str) -> list[Op]:
        return [o for o in self.ops if o.kind == kind]

    def only(self, kind: str) -> Op:
        """The one op of a kind every program has exactly once (`encoder`, `target`, ...)."""
        (op,) = self.of_kind(kind)
        return op

    def arg(self, op: Op, i: int = 0) -> Op:
        """The op that defines `op`'s i-th argument."""
        return self.ops[op.args[i]]


@dataclass(frozen=True)
class TaskIR:
    task: str
    programs: tuple[Program, ...]
    meta: tuple[tuple[str, object], ...] = ()
    version: int = IR_VERSION

    def get(self, name: str, default=None):
        return next((v for k, v in self.meta if k == name), default)

    @property
    def head(self) -> str:
        """The output head that produces this task's target (`tokens`, ...)."""
        return self.programs[0].only("target").name

    @property
    def output(self) -> str:
        """What the task's answers are (`text`, `box`, `box_text`): its postprocess op's name."""
        return self.programs[0].only("postprocess").name
