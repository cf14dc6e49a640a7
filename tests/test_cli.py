"""The CLI contract: exit codes, JSON fields, torch never imported by the compiler."""
from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT
from typer.testing import CliRunner

from ofac.cli import app

runner = CliRunner()


def test_check_exit_codes():
    assert runner.invoke(app, ["check", str(ROOT / "examples" / "families.ofa")]).exit_code == 0
    assert runner.invoke(app, ["check", "-i", "[IMAGES:x] -> [TEXT:y]"]).exit_code == 1
    assert runner.invoke(app, ["check"]).exit_code == 2
    assert runner.invoke(app, ["check", "--format", "xml", "-i", "a -> [TEXT:y]"]).exit_code == 2
    # warnings alone do not fail
    assert runner.invoke(app, ["check", "-i", "<BOS> [TEXT:x] -> [TEXT:y]"]).exit_code == 0


def test_check_json_fields():
    result = runner.invoke(app, ["check", "-f", "json", "-i", "[IMAGE:img] x -> [TEXT:cap,mask_ratio=0.5]"])
    assert result.exit_code == 1
    (d,) = json.loads(result.stdout)
    assert d["code"] == "E0013" and d["severity"] == "error" and d["file"] == "<instruction>"
    assert (d["line"], d["column"], d["end_line"], d["end_column"]) == (1, 28, 1, 42)  # `mask_ratio=0.5`, end exclusive
    assert d["help"] and d["message"]


def test_all_errors_of_a_file_in_one_run(tmp_path):
    f = tmp_path / "bad.ofa"
    f.write_text("task a {\n  instruction: [IMAGES:x] -> [TEXT:y]\n}\n"
                 "task b {\n  instruction: [TEXT:x,closed_set] -> [TEXT:y]\n  weight = -1\n}\n")
    result = runner.invoke(app, ["check", "-f", "json", str(f)])
    codes = sorted(d["code"] for d in json.loads(result.stdout))
    assert codes == ["E0005", "E0013", "E0036"]


def test_explain_prints_ir_text_and_json():
    result = runner.invoke(app, ["explain", str(ROOT / "examples" / "families.ofa"), "--task", "grounding"])
    assert result.exit_code == 0 and "preprocess.box" in result.stdout and "postprocess.box" in result.stdout
    result = runner.invoke(app, ["explain", "-i", "[IMAGE:img] what? -> [TEXT:cap]", "-f", "json"])
    (task,) = json.loads(result.stdout)
    assert task["ofac_ir"] == 2 and task["programs"][0][0]["kind"] == "read"
    assert runner.invoke(app, ["explain", "-i", "x -> y"]).exit_code == 1
    assert runner.invoke(app, ["explain", str(ROOT / "examples" / "families.ofa"), "-t", "nope"]).exit_code == 2


def test_fmt_check_and_rewrite(tmp_path):
    f = tmp_path / "t.ofa"
    f.write_text("task a {instruction: [TEXT:x]   ->   [TEXT:y]\n train=[a.jsonl]}")
    assert runner.invoke(app, ["fmt", "--check", str(f)]).exit_code == 1
    assert runner.invoke(app, ["fmt", str(f)]).exit_code == 0
    assert f.read_text() == "task a {\n    instruction: [TEXT:x] -> [TEXT:y]\n    train = [a.jsonl]\n}\n"
    assert runner.invoke(app, ["fmt", "--check", str(f)]).exit_code == 0


BLOCKED = ("torch", "torchvision", "torchaudio", "numpy", "ofac.runtime")
BLOCK_RUNTIME = (  # an import of any of BLOCKED, or of a module inside one, fails
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if any(name == b or name.startswith(b + '.') for b in {BLOCKED!r}):\n"
    "            raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


def test_the_import_blocker_blocks_the_runtime():
    code = BLOCK_RUNTIME + "import ofac.runtime.errors\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked: ofac.runtime" in proc.stderr


def test_compiler_works_without_the_runtime():
    code = BLOCK_RUNTIME + (
        "import ofac\n"
        "from ofac.cli import app\n"
        "t, d = ofac.compile_instruction('[IMAGE:img] what? -> [TEXT:cap]')\n"
        "assert t is not None\n"
        f"sys.argv = ['ofac', 'check', {str(ROOT / 'examples' / 'families.ofa')!r}]\n"
        "app()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "no problems" in proc.stdout
