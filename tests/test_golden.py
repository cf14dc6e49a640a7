"""Golden tests: inputs in tests/golden/<kind>/ and their expected output beside them.

  diag/NAME.instr | NAME.ofa  ->  NAME.out   rendered diagnostics (plain text)
  ir/NAME.instr   | NAME.ofa  ->  NAME.out   `ofac explain` text
  ast/NAME.instr              ->  NAME.out   the parsed AST
  diag/NAME.path              ->  NAME.out   diagnostics of `.ofa` files named by path

A `.instr` file holds one case per line (lines starting with `#` are comments): each is its own
test, compiled alone as `<instruction>` with spans relative to it, and its expected output is
the section of NAME.out headed `==== <the instruction>`, so adding or editing a case never
moves another case's expected output.  A `.ofa` or `.path` file is one case.

`pytest tests/test_golden.py --accept` (or OFAC_ACCEPT=1) rewrites the expected output of the
cases that run, after an intended change; review the diff."""
from __future__ import annotations

import os
import pprint
import re
from pathlib import Path

import pytest

from ofac import compiler, ir
from ofac.codes import CODES
from ofac.parse import parse_instruction
from ofac.render import render_plain
from ofac.source import SourceFile

ROOT = Path(__file__).parent / "golden"
HEADER = "==== "


def _cases() -> list[tuple[Path, str | None]]:
    out = []
    for path in sorted(p for p in ROOT.glob("*/*") if p.suffix in (".instr", ".ofa", ".path")):
        if path.suffix == ".instr":
            out += [(path, line) for line in _lines(path)]
        else:
            out.append((path, None))
    return out


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def _run_instruction(kind: str, line: str) -> str:
    if kind == "ast":
        instr, diags = parse_instruction(line, SourceFile("<instruction>", line))
        return render_plain(diags.items) + pprint.pformat(instr, width=110) + "\n"
    lowered, diags = compiler.compile_instruction(line)
    out = render_plain(diags)
    if kind == "ir" and lowered is not None:
        out += ir.format_task(lowered) + "\n"
    elif not diags:
        out += "no diagnostics\n"
    return out


def _run_file(kind: str, path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if path.suffix == ".path":  # task files given by path, relative to the .path file
        os.chdir(path.parent)
        return "".join(render_plain(compiler.compile_file(line)[1]) for line in _lines(path))
    compiled, diags = compiler.compile_source(path.read_text(encoding="utf-8"), rel, path.parent)
    if kind == "ir" and compiled is not None:
        return render_plain(diags) + "\n".join(ir.format_task(t) for t in compiled.tasks) + "\n"
    return render_plain(diags) or "no diagnostics\n"


def _sections(text: str) -> dict[str, str]:
    """An expected-output file of a `.instr` file, by case."""
    out: dict[str, str] = {}
    for chunk in text.split("\n" + HEADER) if text else []:
        head, _, body = chunk.removeprefix(HEADER).partition("\n")
        out[head] = body
    return out


def _write_sections(path: Path, sections: dict[str, str], order: list[str]) -> None:
    path.write_text("\n".join(HEADER + k + "\n" + sections[k] for k in order if k in sections), encoding="utf-8")


CASES = _cases()


@pytest.mark.parametrize("path,case", CASES,
                         ids=[p.relative_to(ROOT).as_posix() + (f": {c}" if c else "") for p, c in CASES])
def test_golden(path: Path, case: str | None, accept: bool, monkeypatch):
    monkeypatch.chdir(ROOT)
    kind, expected_path = path.parent.name, path.with_suffix(".out")
    if case is None:
        actual = _run_file(kind, path)
        if accept:
            expected_path.write_text(actual, encoding="utf-8")
        assert expected_path.exists(), f"no golden output {expected_path}; run with --accept"
        assert actual == expected_path.read_text(encoding="utf-8")
        return
    actual = _run_instruction(kind, case)
    sections = _sections(expected_path.read_text(encoding="utf-8")) if expected_path.exists() else {}
    if accept:
        sections[case] = actual
        _write_sections(expected_path, sections, _lines(path))
    assert case in sections, f"no golden output for this case in {expected_path}; run with --accept"
    assert actual == sections[case]


def test_every_code_has_a_golden_case():
    seen = set()
    for out in ROOT.glob("diag/*.out"):
        seen |= set(re.findall(r"(?:error|warning)\[([EW]\d{4})\]", out.read_text(encoding="utf-8")))
    assert sorted(set(CODES) - seen) == []


def test_code_table_matches_the_source():
    src = Path(__file__).parents[1] / "ofac"
    used = set()
    for f in src.rglob("*.py"):
        if f.name != "codes.py":
            used |= set(re.findall(r'"([EW]\d{4})"', f.read_text(encoding="utf-8")))
    assert used == set(CODES)


def test_runtime_code_table_matches_the_runtime_source():
    from ofac.codes import RUNTIME_CODES

    src = Path(__file__).parents[1] / "runtime"
    used = set()
    for f in src.rglob("*.py"):
        used |= set(re.findall(r'"(E01\d{2})"', f.read_text(encoding="utf-8")))
    assert used == set(RUNTIME_CODES) and not set(RUNTIME_CODES) & set(CODES)
