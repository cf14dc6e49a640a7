"""Every OFASys instruction compiles unchanged; AST, file and IR round-trips hold."""
from __future__ import annotations

import json

import pytest
from helpers import EXAMPLES, MAKE_DATA, ofasys_corpus

from ofac import compiler, ir
from ofac.format import format_file, format_instruction
from ofac.parse import parse_file, parse_instruction

CORPUS = ofasys_corpus()


@pytest.mark.parametrize("name,text", CORPUS, ids=[n for n, _ in CORPUS])
def test_ofasys_instruction_compiles(name, text):
    lowered, diags = compiler.compile_instruction(text, task=name)
    errors = [d for d in diags if d.is_error]
    assert errors == [], errors
    assert lowered is not None and all(ir.verify(p) == [] for p in lowered.programs)


@pytest.mark.parametrize("name,text", CORPUS, ids=[n for n, _ in CORPUS])
def test_format_round_trip_of_ofasys_instructions(name, text):
    instr, _ = parse_instruction(text)
    again, diags = parse_instruction(format_instruction(instr))
    assert again == instr
    assert format_instruction(again) == format_instruction(instr)  # idempotent


def _data_is_shipped(path) -> bool:
    """Files whose data a script of examples/ generates (MAKE_DATA) are tested in test_demo and
    test_docs: a fresh clone has no such data."""
    return path.name not in MAKE_DATA


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_check_clean_and_round_trip(path):
    compiled, diags = compiler.compile_file(path, check_data=_data_is_shipped(path))
    assert compiled is not None and not [d for d in diags if d.is_error]
    tf, _, _ = parse_file(path.read_text(encoding="utf-8"), str(path))
    text = format_file(tf)
    again, diags, _ = parse_file(text, "formatted")
    assert again == tf and format_file(again) == text
    # the canonical text compiles to the same IR
    recompiled, _ = compiler.compile_source(text, str(path), path.parent, check_data=_data_is_shipped(path))
    assert [t.programs for t in recompiled.tasks] == [t.programs for t in compiled.tasks]  # spans aside


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_ir_json_round_trip(path):
    compiled, _ = compiler.compile_file(path, check_data=_data_is_shipped(path))
    for task in compiled.tasks:
        data = json.loads(json.dumps(ir.to_json(task)))
        assert ir.from_json(data) == task
        assert ir.format_task(ir.from_json(data)) == ir.format_task(task)


def test_positional_columns_follow_ofasys():
    # unnamed slots bind to their index among the instruction's slots, text runs included
    lowered, _ = compiler.compile_instruction('[IMAGE] does the text " [TEXT] " describe the image ? -> [TEXT]')
    assert lowered.get("inputs") == ("0", "2") and lowered.get("targets") == ("4",)


def test_decoder_prefix_and_loss_mask():
    lowered, _ = compiler.compile_instruction(
        'is " [TEXT:s] " good? -> is " [TEXT:s,no_loss] " good? [TEXT:label,closed_set]')
    group = next(o for o in lowered.programs[0].of_kind("group") if o.get("loss") is not None)
    assert group.get("loss") == (False, False, False, True)  # the first three are the forced prefix
    assert lowered.programs[0].only("loss").get("constrained") is True
    gen = lowered.programs[0].only("generate")
    assert gen.get("constraint") == "trie" and gen.get("beam") == 1 and gen.get("answers") == ()
    assert lowered.get("metric") == "accuracy"


def test_closed_set_answers_reach_the_ir():
    compiled, diags = compiler.compile_source(
        "task vqa {\n  instruction: [IMAGE:i] [TEXT:q] -> [TEXT:a,closed_set]\n"
        "  answers = [yes, no, \"not sure\"]\n}\n")
    gen = compiled.task("vqa").programs[0].only("generate")
    assert gen.get("answers") == ("yes", "no", "not sure")


def test_alternatives_lower_to_one_program_each():
    lowered, _ = compiler.compile_instruction("[IMAGE:i] a? -> [TEXT:c] ||| [IMAGE:i] b? -> [TEXT:c]")
    assert len(lowered.programs) == 2
    texts = [o.get("text") for p in lowered.programs for o in p.ops if o.get("text")]
    assert texts == ["a?", "b?"]


def test_column_read_once_when_used_on_both_sides():
    lowered, _ = compiler.compile_instruction('complete " [TEXT:s,mask_ratio=0.3] " -> [TEXT:s]')
    reads = lowered.programs[0].of_kind("read")
    assert [r.get("column") for r in reads] == ["s"]
    pre = [o for o in lowered.programs[0].of_kind("preprocess") if o.args == (reads[0].id,)]
    assert [o.get("mask_ratio") for o in pre] == [0.3, None]


def test_markers_alone_encode_nothing():
    # found by the fuzz: a side of legacy markers only used to lower to an empty token group
    lowered, diags = compiler.compile_instruction("<BOS> -> [TEXT]")
    assert lowered is not None and [d.code for d in diags] == ["W0101"]
    assert lowered.programs[0].only("encoder").args == ()
