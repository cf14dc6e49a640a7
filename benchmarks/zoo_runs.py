"""What the generative zoo benchmarks (image_zoo.py, motion_zoo.py) share: training a task file
into a run directory with a quiet log, or finding the one an earlier judging trained."""
from __future__ import annotations

import json
import time
from pathlib import Path


def train(tasks: Path, run_dir: Path, steps: int | None) -> float:
    """Train `tasks` into `run_dir` (every 100th step and validation printed); -> wall seconds."""
    from ofac import compiler
    from ofac.runtime.train.recipe import TrainingRun

    compiled = compiler.load(tasks)
    t0 = time.perf_counter()
    TrainingRun(compiled, tasks.parent, out=run_dir, steps=steps,
                log=lambda m: print(m, flush=True) if not m.startswith("step ") or "valid" in m
                or m.split()[1].split("/")[0].endswith("00") else None).fit()
    return time.perf_counter() - t0


def trained(tasks: Path, run_dir: Path, steps: int | None, reuse: bool, record: str) -> float | None:
    """The training's wall seconds: train now, or with `reuse` the time an earlier judging wrote
    to RUN/<record> (None when it wrote none)."""
    if not reuse:
        if run_dir.exists():
            raise SystemExit(f"{run_dir} exists: remove it, or judge it with --reuse")
        wall = train(tasks, run_dir, steps)
        print(f"trained in {wall / 60:.1f} min", flush=True)
        return wall
    if (run_dir / record).exists():
        minutes = json.loads((run_dir / record).read_text()).get("training_minutes")
        return None if minutes is None else minutes * 60
    return None
