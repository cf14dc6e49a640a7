"""Speed beside a busy process: ofac's training, generation and ONNX Runtime answering, each
alone and beside one process that keeps a core busy, in the same run, with ofac's defaults
(short OpenMP spins, threads that follow the free cores: `runtime/threads.py`) and with the
previous behaviour (OpenMP's default 300,000-iteration spin, threads fixed at the core count).

  python benchmarks/contention.py [--seconds 6] [--repeat 2]

Workloads (each in its own process, importing ofac before torch as `ofac run` does): a training
step of the tiny preset (batch 16, source 64, target 32, fp32), greedy generation of 32 tokens
at batch 1, and the same through the ONNX export of a small trained run.  Targets: beside the
busy process ofac keeps >= 45% of its unloaded training speed, and alone it is within 5% of
the previous behaviour.

Last line: RESULT contention ratio=<ofac training, loaded / unloaded> train_before=... generate=...
generate_before=... onnx=... onnx_before=... unloaded_vs_before=<ofac / previous, alone, training>
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {"ofac": {}, "before": {"GOMP_SPINCOUNT": "300000", "OFAC_THREADS": str(len(os.sched_getaffinity(0)))}}
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 600: pass"

CHILD = r'''
import json, os, sys, time
sys.path.insert(0, HERE)
import ofac.runtime  # before torch, as `ofac run` imports it
from ofac.runtime.threads import CHECK_SECONDS, govern
import torch

def train():
    from train_throughput import B, TGT, run_ofac
    step, *_ = run_ofac(0, "fp32")
    return step, B * TGT

def generate():
    from generate_speed import ofac_runner
    return ofac_runner(1, 1), 1

def onnx():
    from ofac.runtime.serve.deployed import load
    model = load(sys.argv[2])
    rows = [{"s": "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"}]
    return (lambda: model.inference("reverse", rows, beam_size=1, max_len=24, min_len=24)), 1

step, units = {"train": train, "generate": generate, "onnx": onnx}[sys.argv[1]]()
warm = time.perf_counter()  # warm-up, long enough for the threads to have followed the load
while time.perf_counter() - warm < 2.5 * CHECK_SECONDS:
    step()
    govern()
start, done = time.perf_counter(), 0
while time.perf_counter() - start < float(os.environ["SECONDS"]):
    step()
    done += units
    govern()
print(json.dumps({"rate": done / (time.perf_counter() - start), "threads": torch.get_num_threads()}))
'''.replace("HERE", repr(str(HERE)))


def rate(workload: str, config: str, seconds: float, export: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OFAC_THREADS")}
    env.update(CONFIGS[config], SECONDS=str(seconds))
    out = subprocess.run([sys.executable, "-c", CHILD, workload, export], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{workload} ({config}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rate(r: dict) -> float:
    return r["rate"]


def loaded(fn):
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(0.5)
        return fn()
    finally:
        busy.kill()
        busy.wait()


def small_export(root: Path) -> str:
    """A run of the onnx_speed benchmark's text task, exported."""
    sys.path.insert(0, str(HERE))
    from onnx_speed import make_run  # noqa: E402

    from ofac.runtime.serve.export import export

    run = make_run(root)
    export(run, root / "onnx")
    return str(root / "onnx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = small_export(Path(tmp))
        best: dict = {}
        for _ in range(args.repeat):  # interleaved, the best of each
            for workload in ("train", "generate", "onnx"):
                for config in CONFIGS:
                    alone = rate(workload, config, args.seconds, export)
                    beside = loaded(lambda w=workload, c=config: rate(w, c, args.seconds, export))
                    old = best.get((workload, config), ({"rate": 0}, {"rate": 0}))
                    best[(workload, config)] = (max(old[0], alone, key=_rate), max(old[1], beside, key=_rate))
    unit = {"train": "target tokens/s", "generate": "generations/s", "onnx": "generations/s"}
    ratios = {}
    for (workload, config), (alone, beside) in best.items():
        ratios[(workload, config)] = beside["rate"] / alone["rate"]
        print(f"{workload:8s} {config:6s} alone {alone['rate']:8.1f} {unit[workload]:15s} beside a busy process "
              f"{beside['rate']:8.1f} ({beside['threads']} thread{'s' * (beside['threads'] > 1)})  kept "
              f"{ratios[(workload, config)]:.0%}")
    same = best[("train", "ofac")][0]["rate"] / best[("train", "before")][0]["rate"]
    print(f"targets: training keeps >= 45% beside a busy process -> {ratios[('train', 'ofac')]:.0%}; alone within 5% "
          f"of the previous behaviour -> {same:.2f}")
    print(f"RESULT contention ratio={ratios[('train', 'ofac')]:.2f} train_before={ratios[('train', 'before')]:.2f} "
          f"generate={ratios[('generate', 'ofac')]:.2f} generate_before={ratios[('generate', 'before')]:.2f} "
          f"onnx={ratios[('onnx', 'ofac')]:.2f} onnx_before={ratios[('onnx', 'before')]:.2f} "
          f"unloaded_vs_before={same:.2f}")


if __name__ == "__main__":
    main()
