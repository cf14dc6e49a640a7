"""The IR verifier and loader reject malformed programs."""
from __future__ import annotations

import pytest

from ofac import compiler, ir


def _program():
    lowered, _ = compiler.compile_instruction("[IMAGE:img] what? -> [TEXT:cap]")
    return lowered


def test_lowered_programs_verify():
    assert ir.verify(_program().programs[0]) == []


def test_verifier_finds_use_before_definition():
    p = _program().programs[0]
    bad = ir.Program(p.task, (ir.Op(0, "preprocess.image", (1,)),) + p.ops[1:])
    assert any("not defined before use" in m for m in ir.verify(bad))


def test_verifier_finds_missing_and_extra_unique_ops():
    p = _program().programs[0]
    no_loss = ir.Program(p.task, tuple(o for o in p.ops if o.family != "loss"))
    assert any("loss" in m for m in ir.verify(no_loss))


def test_verifier_finds_dead_ops_and_bad_opcodes():
    p = _program().programs[0]
    extra = ir.Op(len(p.ops), "read.column", (), (("column", "x"),))
    assert any("never used" in m for m in ir.verify(ir.Program(p.task, p.ops + (extra,))))
    weird = ir.Op(len(p.ops), "teleport.tensor", ())
    assert any("unknown opcode" in m for m in ir.verify(ir.Program(p.task, p.ops + (weird,))))


def test_loader_rejects_other_versions_and_garbage():
    data = ir.to_json(_program())
    with pytest.raises(ir.IRError, match="version"):
        ir.from_json({**data, "ofac_ir": 99})
    with pytest.raises(ir.IRError, match="malformed"):
        ir.from_json({"ofac_ir": 1, "task": "x"})
    broken = {**data, "programs": [[{**op, "args": [42]} if op["id"] == 1 else op for op in data["programs"][0]]]}
    with pytest.raises(ir.IRError, match="invalid IR"):
        ir.from_json(broken)
