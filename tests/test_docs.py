"""The READMEs' examples run as written: every fenced ```sh and ```python block of README.md and
examples/README.md, in order, in a copy of the repository, as a new user would run them after
the set-up command (which CI itself runs on a fresh clone).

A block preceded by `<!-- docs-test: skip (why) -->` is not run (the test suite itself, an
hour-long benchmark).  The examples run as printed; only their size is smaller, through the
environment variables they honour: OFAC_MAX_STEPS caps every training run's updates and
OFAC_MAX_ROWS the rows `examples/make_data.py` writes per task."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MAKE_DATA

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "examples/README.md")
BLOCK = re.compile(r"(?:<!-- docs-test: skip \((?P<why>[^)]+)\) -->\n)?```(?P<lang>python|sh)\n(?P<code>.*?)```", re.S)
SETUP = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
SMALL = {"OFAC_MAX_STEPS": "2", "OFAC_MAX_ROWS": "40"}
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "runs", "zoo", "catalogue", "__pycache__", ".pytest_cache",
                                     ".hypothesis", "*.egg-info", "boxed.png", ".gl", ".whl")


def blocks(doc: str) -> list[tuple[str, str, str | None]]:
    """(language, code, why it is skipped or None) of each fenced example, in order."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    return [(m["lang"], m["code"], m["why"]) for m in BLOCK.finditer(text)]


def test_the_docs_start_with_the_two_commands_and_say_why_a_block_is_skipped():
    (lang, main, why), (_, tests, tests_why) = blocks("README.md")[:2]
    assert lang == "sh" and main.startswith(SETUP) and why is None  # the main job runs
    assert tests.strip() == SETUP + ".venv/bin/python -m pytest -q" and tests_why == "the test suite itself"
    assert (ROOT / ".ci" / "run").read_text().count(".venv/bin/python -m pytest -q") == 1
    for doc in DOCS:
        assert len([b for b in blocks(doc) if b[2] is None]) >= 2, doc


def _run(lang: str, code: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    if lang == "python":
        return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=900)
    bindir = str(Path(sys.executable).parent)
    script = code.replace(SETUP, "").replace(".venv/bin/", bindir + "/")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS)
def test_the_examples_of_a_doc_run_in_order(doc, tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
    env = {**os.environ, **SMALL, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "MPLBACKEND": "Agg"}
    ran = 0
    for k, (lang, code, why) in enumerate(blocks(doc)):
        if why is not None:
            continue
        done = _run(lang, code, copy, env)
        assert done.returncode == 0, f"{doc} block {k + 1} ({lang}) failed:\n{code}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{doc} block {k + 1}:\n{done.stderr}"
        ran += 1
    assert ran >= 2
    if doc == "README.md":  # what the main job promised: a picture of the grounding answer
        assert (copy / "boxed.png").exists() and (copy / "runs" / "quick" / "onnx" / "manifest.json").exists()


def _trained_by_the_docs() -> set[str]:
    """The example files a run block of the docs trains (`ofac run examples/NAME.ofa`) and then
    answers from (`ofac eval` / `ofac infer` / the Python API in the same or the next block)."""
    return {m for doc in DOCS for _, code, why in blocks(doc) if why is None
            for m in re.findall(r"ofac run examples/(\w+\.ofa)", code)}


# the files no doc block trains: the docs tests already train and answer the others as printed
EXAMPLE_FILES = sorted(p.name for p in (ROOT / "examples").glob("*.ofa") if p.name not in _trained_by_the_docs())


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_every_example_file_trains_and_answers_a_row(name, tmp_path, monkeypatch):
    """Each `.ofa` file of examples/ no doc block runs trains a few steps (OFAC_MAX_STEPS) on its
    data and answers one row of its first task from the checkpoint."""
    from ofac import load
    from ofac.runtime.data.sources import open_source
    from ofac.runtime.data.tasks import as_definition
    from ofac.runtime.serve.answer import OFASys
    from ofac.runtime.train.recipe import TrainingRun

    copy = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", copy, ignore=COPY_IGNORE)
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    if name in MAKE_DATA:
        script, *args = MAKE_DATA[name]
        made = subprocess.run([sys.executable, str(copy / script), *args], capture_output=True,
                              text=True, env={**os.environ, **SMALL})
        assert made.returncode == 0, made.stderr
    compiled = load(copy / name)
    result = TrainingRun(compiled, copy, out=tmp_path / "run").fit()
    assert result.step == int(SMALL["OFAC_MAX_STEPS"])
    first = as_definition(compiled).tasks[0]
    split = "valid" if "valid" in first.data else "train"
    source = open_source(first.data[split][0], first.settings.get("columns", ()), copy)
    row = {k: v for k, v in source.row(0).items() if k in first.ir.get("inputs", ())}
    answer = OFASys.from_pretrained(tmp_path / "run").inference(first.name, row, base_dir=source.base_dir)
    assert answer.n_best and (answer.text is not None or answer.boxes is not None or answer.image is not None
                              or answer.waveform is not None or answer.motion is not None)
