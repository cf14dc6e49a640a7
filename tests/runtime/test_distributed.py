"""Several training processes (`ofac run --nproc 2`, torchrun + gloo on the CPU) train the
same model as one process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_trainer import make_task_file

pytestmark = pytest.mark.slow  # trains or exports for real: `pytest -m "not slow"` skips it


def ofac_run(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ofac.cli", "run", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def losses(run):
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "lr" in r]


def weights(run, step):
    return load_file(str(run / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, micro-batches of 8: single(loss_mean) is its run directory (trained once)."""
    runs = {}

    def run(loss_mean: str) -> Path:
        if loss_mean not in runs:
            root = tmp_path_factory.mktemp(f"single_{loss_mean}")
            make_task_file(root, steps=6, micro_batch_size=8, dropout="0.0",
                           extra_train=f"loss_mean = {loss_mean}  precision = fp32")
            done = ofac_run("t.ofa", cwd=root)
            assert done.returncode == 0, done.stderr
            runs[loss_mean] = root / "run"
        return runs[loss_mean]
    return run


@pytest.mark.parametrize("parallel,loss_mean", [("ddp", "tokens"), ("fsdp", "tokens"), ("ddp", "tasks")])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, single, parallel, loss_mean):
    # two processes with micro-batches of 4 draw exactly the rows one process draws with 8 (in
    # fp32: bf16 autocast, which `precision = auto` picks on AVX512-BF16 CPUs, rounds differently
    # per micro-batch shape); the per-task token counts of `loss_mean = tasks` are summed over both ranks
    one_process = single(loss_mean)
    make_task_file(tmp_path, steps=6, micro_batch_size=4, dropout="0.0",
                   extra_train=f"loss_mean = {loss_mean}  precision = fp32")
    done = ofac_run("t.ofa", "--nproc", 2, "--parallel", parallel, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("finished step 6") == 1  # rank 0 speaks for the run
    one, two = losses(one_process), losses(tmp_path / "run")
    assert len(two) == 6  # one record per step, written once
    assert two == pytest.approx(one, rel=1e-5)
    a, b = weights(one_process, 6), weights(tmp_path / "run", 6)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-3, rtol=1e-3, msg=k)
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").exists()  # rank 0 validated
    valid = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "valid" in r]
    assert len(valid) == 1 and set(valid[0]["valid"]) == {"caption", "middle"}


def test_a_distributed_run_resumes_with_another_process_count(tmp_path):
    make_task_file(tmp_path, steps=4, micro_batch_size=4, dropout="0.0")
    first = ofac_run("t.ofa", "--nproc", 2, "--steps", 4, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert state["world"] == 2 and len(state["rng_ranks"]) == 2
    again = ofac_run("t.ofa", "--nproc", 2, cwd=tmp_path)  # no --resume: refused, nothing overwritten
    assert again.returncode == 1 and "E0117" in again.stderr and again.stderr.count("E0117") == 1
    more = ofac_run("t.ofa", "--steps", 6, "--resume", cwd=tmp_path)  # one process takes over
    assert more.returncode == 0, more.stderr
    assert weights(tmp_path / "run", 6)


def test_ctrl_c_saves_and_the_distributed_run_resumes(tmp_path):
    import signal
    import time

    make_task_file(tmp_path, steps=2000, micro_batch_size=4, dropout="0.0")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ofac.cli", "run", "t.ofa", "--nproc", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 10):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: saved step" in err
    saved = int((tmp_path / "run" / "checkpoints" / "latest").read_text().split("-")[1])
    assert saved >= 10
    more = ofac_run("t.ofa", "--nproc", 2, "--resume", "--steps", saved + 2, cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert f"finished step {saved + 2}" in more.stderr
