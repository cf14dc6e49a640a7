"""Golden tests: an input file in tests/golden/<kind>/ and its expected output beside it.

  diag/NAME.instr | NAME.ofa  ->  NAME.out   rendered diagnostics (plain text)
  ir/NAME.instr   | NAME.ofa  ->  NAME.out   `ofac explain` text
  ast/NAME.instr              ->  NAME.out   the parsed AST
  diag/NAME.path              ->  NAME.out   diagnostics of `.ofa` files named by path

One input per file; a `.instr` file holds one instruction per line, each compiled on
its own.  Run `pytest tests/test_golden.py --accept` (or OFAC_ACCEPT=1) to rewrite the
outputs after an intended change, then review the diff."""
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
CASES = sorted(p for p in ROOT.glob("*/*") if p.suffix in (".instr", ".ofa", ".path"))


def _lines(path: Path):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            yield n, line


def _run(kind: str, path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if path.suffix == ".path":  # task files given by path, relative to the .path file
        os.chdir(path.parent)
        return "".join(render_plain(compiler.compile_file(line)[1]) for _, line in _lines(path))
    if path.suffix == ".ofa":
        compiled, diags = compiler.compile_source(path.read_text(encoding="utf-8"), rel, path.parent)
        if kind == "ir" and compiled is not None:
            return render_plain(diags) + "\n".join(ir.format_task(t) for t in compiled.tasks) + "\n"
        return render_plain(diags) or "no diagnostics\n"
    out = []
    for n, line in _lines(path):
        out.append(f"==== {line}\n")
        if kind == "ast":
            instr, diags = parse_instruction(line, SourceFile(rel, line, first_line=n))
            out.append(render_plain(diags.items) + pprint.pformat(instr, width=110) + "\n")
            continue
        lowered, diags = compiler.compile_instruction(line, name=rel, first_line=n)
        out.append(render_plain(diags))
        if kind == "ir" and lowered is not None:
            out.append(ir.format_task(lowered) + "\n")
        elif not diags:
            out.append("no diagnostics\n")
    return "\n".join(out)


@pytest.mark.parametrize("path", CASES, ids=[p.relative_to(ROOT).as_posix() for p in CASES])
def test_golden(path: Path, accept: bool, monkeypatch):
    monkeypatch.chdir(ROOT)
    actual = _run(path.parent.name, path)
    expected_path = path.with_suffix(".out")
    if accept:
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.exists(), f"no golden output {expected_path}; run with --accept"
    assert actual == expected_path.read_text(encoding="utf-8")


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
