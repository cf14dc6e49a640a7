"""The IR: what every stage after the checker runs on.

A `Program` is one template of a task lowered to a flat, ordered tuple of SSA ops.  A
`TaskIR` is a task: its alternative templates (`|||`, one drawn per sample, all of one
shape) plus metadata.  Both print as stable text and serialize to versioned JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

IR_VERSION = 1

# opcode family -> (min args, max args); the verifier checks arity and SSA order.
OPCODES = {
    "read.column": (0, 0),
    "preprocess": (0, 2),
    "tokens.repeat": (1, None),
    "tokens.group": (1, None),
    "adapt": (1, 1),
    "encoder.concat": (0, None),
    "decoder.target": (1, 1),
    "loss": (1, 1),
    "generate": (1, 1),
    "postprocess": (1, 1),
}
UNIQUE = ("encoder.concat", "decoder.target", "loss", "generate", "postprocess")
_FAMILIES: dict[str, str] = {}


def family_of(op: str) -> str:
    """`preprocess.image` -> `preprocess`; exact opcodes such as `read.column` are their own family."""
    fam = _FAMILIES.get(op)
    if fam is None:
        fam = _FAMILIES[op] = op if op in OPCODES else op.split(".")[0]
    return fam


@dataclass(frozen=True)
class Op:
    id: int
    op: str
    args: tuple[int, ...] = ()
    attrs: tuple[tuple[str, object], ...] = ()
    span: str | None = field(default=None, compare=False)

    @property
    def family(self) -> str:
        return family_of(self.op)

    def get(self, name: str, default=None):
        return next((v for k, v in self.attrs if k == name), default)


@dataclass(frozen=True)
class Program:
    task: str
    ops: tuple[Op, ...]

    def find(self, family: str) -> list[Op]:
        return [o for o in self.ops if o.family == family]

    def op(self, i: int) -> Op:
        return self.ops[i]


@dataclass(frozen=True)
class TaskIR:
    task: str
    programs: tuple[Program, ...]
    meta: tuple[tuple[str, object], ...] = ()
    version: int = IR_VERSION

    def get(self, name: str, default=None):
        return next((v for k, v in self.meta if k == name), default)


# --------------------------------------------------------------------------- text

def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return repr(v)


def format_op(op: Op) -> str:
    parts = [f"%{op.id} = {op.op}"] + [f"%{a}" for a in op.args] + [f"{k}={_value(v)}" for k, v in op.attrs]
    text = " ".join(parts)
    return f"{text:<60}  # {op.span}" if op.span else text


def format_task(t: TaskIR) -> str:
    lines = [f"task {t.task}  (ofac IR v{t.version})"]
    lines += [f"  {k}: {_value(v)}" for k, v in t.meta]
    for i, p in enumerate(t.programs):
        if len(t.programs) > 1:
            lines.append(f"  template {i}:")
        lines += ["    " + format_op(op) for op in p.ops]
    return "\n".join(lines)


# --------------------------------------------------------------------------- JSON

def to_json(t: TaskIR) -> dict:
    return {
        "ofac_ir": t.version,
        "task": t.task,
        "meta": {k: _jsonable(v) for k, v in t.meta},
        "programs": [[{"id": o.id, "op": o.op, "args": list(o.args),
                       "attrs": {k: _jsonable(v) for k, v in o.attrs}, "span": o.span}
                      for o in p.ops] for p in t.programs],
    }


def _jsonable(v):
    return [_jsonable(x) for x in v] if isinstance(v, tuple) else v


def _frozen(v):
    return tuple(_frozen(x) for x in v) if isinstance(v, list) else v


class IRError(ValueError):
    """IR that fails to load or verify (a corrupt or incompatible file, or a compiler bug)."""


def from_json(data: dict) -> TaskIR:
    try:
        version = data["ofac_ir"]
        if version != IR_VERSION:
            raise IRError(f"IR version {version} is not supported (this ofac reads version {IR_VERSION})")
        programs = tuple(
            Program(data["task"], tuple(Op(o["id"], o["op"], tuple(o["args"]),
                                           tuple((k, _frozen(v)) for k, v in o["attrs"].items()), o.get("span"))
                                        for o in ops))
            for ops in data["programs"])
        t = TaskIR(data["task"], programs, tuple((k, _frozen(v)) for k, v in data["meta"].items()), version)
    except (KeyError, TypeError, AttributeError) as err:
        raise IRError(f"malformed IR JSON: {type(err).__name__}: {err}") from None
    problems = [msg for p in t.programs for msg in verify(p)]
    if problems:
        raise IRError("invalid IR: " + "; ".join(problems))
    return t


def dumps(tasks: list[TaskIR]) -> str:
    return json.dumps([to_json(t) for t in tasks], indent=1, ensure_ascii=False)


# --------------------------------------------------------------------------- verifier

def verify(p: Program) -> list[str]:
    """The invariants every Program holds; an empty list when it is well formed."""
    problems = []
    used: set[int] = set()
    fams = [family_of(op.op) for op in p.ops]
    for i, (op, fam) in enumerate(zip(p.ops, fams)):
        where = f"%{op.id} {op.op}"
        if op.id != i:
            problems.append(f"{where}: id should be {i}")
        if fam not in OPCODES:
            problems.append(f"{where}: unknown opcode")
            continue
        lo, hi = OPCODES[fam]
        if len(op.args) < lo or (hi is not None and len(op.args) > hi):
            problems.append(f"{where}: takes {lo}..{hi if hi is not None else 'n'} args, has {len(op.args)}")
        for a in op.args:
            if not isinstance(a, int) or not 0 <= a < i:
                problems.append(f"{where}: argument %{a} is not defined before use")
            else:
                used.add(a)
    for family in UNIQUE:
        n = fams.count(family)
        if n != 1:
            problems.append(f"expected exactly one {family} op, found {n}")
    for op, fam in zip(p.ops, fams):
        if fam not in _SINKS and op.id not in used:
            problems.append(f"%{op.id} {op.op}: result is never used")
    return problems + _check_edges(p, fams)


_SINKS = ("loss", "generate", "postprocess", "encoder.concat", "decoder.target")
_INPUTS = {"loss": ("decoder.target",), "generate": ("decoder.target",), "postprocess": ("generate",)}


def _check_edges(p: Program, fams: list[str]) -> list[str]:
    problems = []
    n = len(p.ops)
    for op, fam in zip(p.ops, fams):
        if fam not in _INPUTS and fam not in ("encoder.concat", "decoder.target"):
            continue
        kinds = [fams[a] for a in op.args if isinstance(a, int) and 0 <= a < n]
        if fam in _INPUTS and kinds != list(_INPUTS[fam]):
            problems.append(f"%{op.id} {op.op}: must take the {_INPUTS[fam][0]} op")
        if fam in ("encoder.concat", "decoder.target") and any(k != "adapt" for k in kinds):
            problems.append(f"%{op.id} {op.op}: takes adapt ops only")
    return problems
