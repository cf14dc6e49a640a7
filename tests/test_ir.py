"""The IR verifier checks programs against the op kinds' specs; the loader rejects malformed
files and upgrades programs ofac IR v1 wrote."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ofac import compiler, ir

V1 = Path(__file__).parent / "data" / "ir_v1_families.json"  # families.ofa, lowered by ofac IR v1


def _program(instruction="[IMAGE:img] what? -> [TEXT:cap]"):
    lowered, _ = compiler.compile_instruction(instruction)
    return lowered.programs[0]


def _with(p: ir.Program, i: int, **changes) -> ir.Program:
    ops = list(p.ops)
    ops[i] = replace(ops[i], **changes)
    return ir.Program(p.task, tuple(ops))


def _index(p: ir.Program, opcode: str) -> int:
    return next(o.id for o in p.ops if o.opcode == opcode)


def test_lowered_programs_verify():
    assert ir.verify(_program()) == []


def test_verifier_finds_use_before_definition():
    p = _program()
    bad = _with(p, 1, args=(5,))
    assert any("not defined before use" in m for m in ir.verify(bad))


def test_verifier_checks_argument_kinds():
    p = _program()
    target = _index(p, "target.tokens")
    read = _index(p, "read")
    bad = _with(p, target, args=(read,))  # a target takes an adapt op
    assert any("is a read op; takes adapt" in m for m in ir.verify(bad))


def test_a_loss_reads_its_target_first_and_may_read_an_encoder_segment():
    p = _program("[AUDIO:wav] what is said? -> [TEXT:text,preprocess=text_phone]")
    loss = next(o for o in p.ops if o.kind == "loss")
    assert loss.name == "speech_to_text" and p.ops[loss.args[1]].opcode == "adapt.audio_fbank"
    assert ir.verify(p) == []
    swapped = _with(p, loss.id, args=loss.args[::-1])
    assert any("its first argument" in m and "should be a target op" in m for m in ir.verify(swapped))


def test_verifier_checks_arity():
    p = _program()
    adapt = _index(p, "adapt.image_patch")
    assert any("takes 1..1 arguments, has 2" in m for m in ir.verify(_with(p, adapt, args=(0, 1))))


def test_verifier_finds_missing_and_extra_unique_ops():
    p = _program()
    no_loss = ir.Program(p.task, tuple(o for o in p.ops if o.kind != "loss"))
    assert "expected exactly one loss op, found 0" in ir.verify(no_loss)


def test_verifier_checks_required_attributes_and_their_types():
    p = _program()
    read = _index(p, "read")
    no_column = _with(p, read, attrs=tuple(kv for kv in p.ops[read].attrs if kv[0] != "column"))
    assert any("missing attribute `column`" in m for m in ir.verify(no_column))
    as_int = _with(p, read, attrs=tuple((k, 1 if k == "repeated" else v) for k, v in p.ops[read].attrs))
    assert any("`repeated` should be bool" in m for m in ir.verify(as_int))
    side = _with(p, read, attrs=tuple((k, "middle" if k == "side" else v) for k, v in p.ops[read].attrs))
    assert any("`side` is 'middle'" in m for m in ir.verify(side))


def test_verifier_rejects_unknown_attributes_on_closed_kinds_only():
    p = _program()
    group = _index(p, "group")
    assert any("unknown attribute prefix" in m
               for m in ir.verify(_with(p, group, attrs=p.ops[group].attrs + (("prefix", 0),))))
    pre = _index(p, "preprocess.image")  # implementations of named kinds declare their own
    assert ir.verify(_with(p, pre, attrs=p.ops[pre].attrs + (("anything", 1),))) == []


def test_verifier_checks_names():
    p = _program()
    assert any("needs the name" in m for m in ir.verify(_with(p, _index(p, "target.tokens"), name="")))
    assert any("takes no name" in m for m in ir.verify(_with(p, _index(p, "group"), name="x")))


def test_verifier_finds_dead_ops_and_unknown_kinds():
    p = _program()
    extra = ir.Op(len(p.ops), "read", "", (), (("column", "x"), ("modality", "TEXT"), ("side", "encoder"),
                                                ("repeated", False)))
    assert any("never used" in m for m in ir.verify(ir.Program(p.task, p.ops + (extra,))))
    weird = ir.Op(len(p.ops), "teleport", "tensor", ())
    assert any("unknown op kind `teleport`" in m for m in ir.verify(ir.Program(p.task, p.ops + (weird,))))


def test_a_box_follows_its_images_preprocessing():
    p = _program('[IMAGE:img] which region does the text " [TEXT:cap] " describe? -> [BOX:box]')
    box = p.ops[_index(p, "preprocess.box")]
    assert p.arg(box, 1).opcode == "preprocess.image"


def test_loader_rejects_other_versions_and_garbage():
    task, _ = compiler.compile_instruction("[IMAGE:img] what? -> [TEXT:cap]")
    data = ir.to_json(task)
    with pytest.raises(ir.IRError, match="version"):
        ir.from_json({**data, "ofac_ir": 99})
    with pytest.raises(ir.IRError, match="malformed"):
        ir.from_json({"ofac_ir": 2, "task": "x"})
    broken = {**data, "programs": [[{**op, "args": [42]} if op["id"] == 1 else op for op in data["programs"][0]]]}
    with pytest.raises(ir.IRError, match="invalid IR"):
        ir.from_json(broken)


def test_programs_of_ir_v1_load_as_todays_lowering():
    compiled, _ = compiler.compile_file(Path(__file__).parents[1] / "examples" / "families.ofa", check_data=False)
    old = [ir.from_json(t) for t in json.loads(V1.read_text())]
    assert [t.task for t in old] == [t.task for t in compiled.tasks]
    for then, now in zip(old, compiled.tasks):
        assert then.programs == now.programs, then.task
        assert then.meta == now.meta
