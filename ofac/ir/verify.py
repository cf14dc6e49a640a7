"""The verifier: the invariants every Program holds, checked against the op kinds' specs after
every lowering and on every load."""
from __future__ import annotations

from .kinds import OP_KINDS, TYPES
from .program import Op, Program


class IRError(ValueError):
    """IR that fails to load or verify (a corrupt or incompatible file, or a compiler bug)."""


def verify(p: Program) -> list[str]:
    """Every problem of the program, one message each; an empty list when it is well formed."""
    problems: list[str] = []
    used: set[int] = set()
    for i, op in enumerate(p.ops):
        spec = OP_KINDS.get(op.kind)
        where = f"%{op.id} {op.opcode}"
        if op.id != i:
            problems.append(f"{where}: id should be {i}")
        if spec is None:
            problems.append(f"{where}: unknown op kind `{op.kind}`")
            continue
        if spec.named != bool(op.name):
            problems.append(f"{where}: " + ("needs the name of an implementation" if spec.named
                                            else f"`{op.kind}` takes no name"))
        problems += _arguments(p, op, spec, i, where)
        used.update(a for a in op.args if isinstance(a, int) and 0 <= a < i)
        problems += _attributes(op, spec, where)
    for spec in OP_KINDS.values():
        if spec.unique:
            n = sum(op.kind == spec.kind for op in p.ops)
            if n != 1:
                problems.append(f"expected exactly one {spec.kind} op, found {n}")
    for op in p.ops:
        spec = OP_KINDS.get(op.kind)
        if spec is not None and not spec.sink and op.id not in used:
            problems.append(f"%{op.id} {op.opcode}: result is never used")
    return problems


def _arguments(p: Program, op: Op, spec, i: int, where: str) -> list[str]:
    lo, hi = spec.arity
    problems = []
    if len(op.args) < lo or (hi is not None and len(op.args) > hi):
        problems.append(f"{where}: takes {lo}..{hi if hi is not None else 'n'} arguments, has {len(op.args)}")
    if spec.first and op.args and isinstance(op.args[0], int) and 0 <= op.args[0] < i \
            and p.ops[op.args[0]].kind != spec.first:
        problems.append(f"{where}: its first argument %{op.args[0]} is a {p.ops[op.args[0]].kind} op; "
                        f"should be a {spec.first} op")
    for a in op.args:
        if not isinstance(a, int) or not 0 <= a < i:
            problems.append(f"{where}: argument %{a} is not defined before use")
        elif p.ops[a].kind not in spec.arg_kinds:
            problems.append(f"{where}: argument %{a} is a {p.ops[a].kind} op; takes {' or '.join(spec.arg_kinds)}")
    return problems


def _attributes(op: Op, spec, where: str) -> list[str]:
    problems = []
    given = dict(op.attrs)
    for a in spec.attrs:
        if a.name not in given:
            if a.required:
                problems.append(f"{where}: missing attribute `{a.name}`")
            continue
        value = given[a.name]
        if not TYPES[a.type](value):
            problems.append(f"{where}: attribute `{a.name}` should be {a.type}, is {value!r}")
        elif a.choices and value not in a.choices:
            problems.append(f"{where}: attribute `{a.name}` is {value!r}, one of {', '.join(map(repr, a.choices))}")
    if not spec.open_attrs:
        extra = sorted(set(given) - {a.name for a in spec.attrs})
        if extra:
            problems.append(f"{where}: unknown attribute{'s' * (len(extra) > 1)} {', '.join(extra)}")
    return problems
