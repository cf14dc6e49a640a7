"""Fuzzing: the compiler returns a program or diagnostics for any input, never raises."""
from __future__ import annotations

from helpers import ofasys_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ofac import compiler, ir
from ofac.modalities import MODALITIES
from ofac.render import render_plain

NAMES = list(MODALITIES) + ["text", "IMAGES", "CATEGORY", "BOUNDING_BOX", "A"]
ATTRS = sorted({a.name for m in MODALITIES.values() for a in m.attrs}) + ["foo", "preprocessor"]
VALUES = ["0.3", "1.5", "-1", "abc", "", "image_vqgan", "text", "876", '"x y"']
TEXT = st.text(alphabet=st.sampled_from(list("abc ?\"'()[]*:,=-<>|#\u00e9")), max_size=12)


@st.composite
def slots(draw):
    head = draw(st.sampled_from(NAMES))
    col = draw(st.one_of(st.none(), st.sampled_from(["img", "cap", "x", "", "0"])))
    attrs = draw(st.lists(st.tuples(st.sampled_from(ATTRS), st.one_of(st.none(), st.sampled_from(VALUES))),
                          max_size=3))
    body = head + (f":{col}" if col is not None else "")
    body += "".join("," + k + (f"={v}" if v is not None else "") for k, v in attrs)
    return f"[{body}]"


@st.composite
def sides(draw):
    parts = draw(st.lists(st.one_of(slots(), TEXT, st.sampled_from(["<BOS>", "<EOS>"])), max_size=4))
    if draw(st.booleans()) and parts:
        parts = ["("] + parts + [")*"]
    return " ".join(parts)


@st.composite
def instructions(draw):
    n = draw(st.integers(1, 2))
    templates = [draw(sides()) + draw(st.sampled_from([" -> ", " ", " -> -> "])) + draw(sides()) for _ in range(n)]
    return " ||| ".join(templates)


def _rendered(diags) -> None:
    """Every diagnostic renders, for people and as JSON, with its code and message."""
    for d in diags:
        text = render_plain([d])
        assert f"[{d.code}]: {d.message}" in text
        assert d.to_json()["code"] == d.code


def _compiles_or_diagnoses(text: str) -> None:
    lowered, diags = compiler.compile_instruction(text)
    if lowered is None:
        assert any(d.is_error for d in diags), text
    else:
        assert all(ir.verify(p) == [] for p in lowered.programs)
    _rendered(diags)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instructions())
def test_generated_instructions(text):
    _compiles_or_diagnoses(text)


CORPUS = [t for _, t in ofasys_corpus()]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CORPUS), st.integers(0, 400), st.integers(0, 3),
       st.text(alphabet=st.sampled_from(list("[]():,=-> |*\"<>xTEXT\n")), max_size=3))
def test_mutated_ofasys_instructions(text, pos, cut, insert):
    pos %= len(text) + 1
    _compiles_or_diagnoses(text[:pos] + insert + text[pos + cut:])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_task_files(text):
    for source in ("task t {\n" + text + "\n}\n", text):
        compiled, diags = compiler.compile_source(source, "<fuzz>", None, check_data=False)
        if compiled is None:
            assert any(d.is_error for d in diags)
        _rendered(diags)
