"""The IR as stable text (`ofac explain`) and as versioned JSON (stored in every run directory
and export).  Loading verifies; programs written by ofac IR v1 are upgraded on load."""
from __future__ import annotations

import json

from .program import IR_VERSION, Op, Program, TaskIR
from .verify import IRError, verify

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
    parts = [f"%{op.id} = {op.opcode}"] + [f"%{a}" for a in op.args] + [f"{k}={_value(v)}" for k, v in op.attrs]
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
        "programs": [[{"id": o.id, "kind": o.kind, "name": o.name, "args": list(o.args),
                       "attrs": {k: _jsonable(v) for k, v in o.attrs}, "span": o.span}
                      for o in p.ops] for p in t.programs],
    }


def dumps(tasks: list[TaskIR]) -> str:
    return json.dumps([to_json(t) for t in tasks], indent=1, ensure_ascii=False)


def _jsonable(v):
    return [_jsonable(x) for x in v] if isinstance(v, tuple) else v


def _frozen(v):
    return tuple(_frozen(x) for x in v) if isinstance(v, list) else v


def from_json(data: dict) -> TaskIR:
    """A TaskIR from `to_json` output (or ofac IR v1's), verified."""
    try:
        version = data["ofac_ir"]
        if version == 1:
            data = _upgrade_v1(data)
        elif version != IR_VERSION:
            raise IRError(f"IR version {version} is not supported (this ofac reads versions 1 and {IR_VERSION})")
        programs = tuple(
            Program(data["task"], tuple(Op(o["id"], o["kind"], o["name"], tuple(o["args"]),
                                           tuple((k, _frozen(v)) for k, v in o["attrs"].items()), o.get("span"))
                                        for o in ops))
            for ops in data["programs"])
        t = TaskIR(data["task"], programs, tuple((k, _frozen(v)) for k, v in data["meta"].items()))
    except (KeyError, TypeError, AttributeError) as err:
        raise IRError(f"malformed IR JSON: {type(err).__name__}: {err}") from None
    problems = [msg for p in t.programs for msg in verify(p)]
    if problems:
        raise IRError("invalid IR: " + "; ".join(problems))
    return t


# v1 opcode -> (kind, name); v1 spelled every op `family.member`
_V1_FIXED = {"read.column": ("read", ""), "tokens.group": ("group", ""), "tokens.repeat": ("repeat", ""),
             "encoder.concat": ("encoder", ""), "decoder.target": ("target", "tokens")}
# attributes v1 wrote that nothing read (derivable, or implied by the implementation's name)
_V1_DROPPED = {"group": {"prefix", "closed_set"}, "target": {"output"}, "postprocess": {"strip_prefix"},
               "preprocess": {"bpe", "random_resize", "augment"}}


def _upgrade_v1(data: dict) -> dict:
    """ofac IR v1 (run directories of ofac before the output heads) -> v2: opcodes split into
    kind and name, a box's second argument its image's preprocessing instead of its read, and
    the attributes nothing read dropped."""
    programs = []
    for ops in data["programs"]:
        out = []
        for o in ops:
            kind, name = _V1_FIXED.get(o["op"]) or tuple(o["op"].split(".", 1))
            attrs = {k: v for k, v in o["attrs"].items() if k not in _V1_DROPPED.get(kind, ())}
            args = list(o["args"])
            if kind == "preprocess" and name == "box" and len(args) == 2:
                image = next((p["id"] for p in out if p["kind"] == "preprocess" and p["args"][:1] == [args[1]]), None)
                if image is None:
                    raise IRError("IR v1 program with a box preprocessed before its image: compile the task again")
                args[1] = image
            out.append({"id": o["id"], "kind": kind, "name": name, "args": args, "attrs": attrs, "span": o.get("span")})
        programs.append(out)
    meta = {k: v for k, v in data["meta"].items() if k != "output"}
    return {"ofac_ir": IR_VERSION, "task": data["task"], "meta": meta, "programs": programs}
