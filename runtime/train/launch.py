"""`ofac run`: train a compiled task file in this process, or, with several processes, start
that many copies of the command through torchrun (each trains one rank); the live display and
the diagnostics of a failed run."""
from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from ..errors import RunError
from .display import TrainDisplay
from .distributed import launched, torchrun
from .options import TrainOptions
from .recipe import TrainingRun


def run_file(compiled, base_dir: Path, console, *, nproc: int = 1, relaunch: list[str] = (), out=None, steps=None,
             resume: bool = False, device=None, precision=None, parallel=None, report=None) -> int:
    """Train `compiled`; -> the exit status (0 finished, 1 a diagnostic was reported, 130
    interrupted).  `relaunch`: the arguments of `python` that run this command again, for the
    processes torchrun starts when `nproc` > 1.  `report(diagnostics)` prints diagnostics."""
    if nproc > 1 and not launched():
        return torchrun(nproc, list(relaunch), console)
    rank = int(os.environ.get("RANK", 0)) if launched() else 0
    try:
        total = TrainOptions.from_settings(dict(compiled.checked.train), steps=steps).steps  # OFAC_MAX_STEPS too
    except RunError as e:
        if report is not None:
            report(e.diagnostics)
        return 1
    display = TrainDisplay(console if rank == 0 else Console(stderr=True, quiet=True), total,
                           {t.task: t.get("metric") for t in compiled.tasks})
    # step lines are the display's (the live table, or its periodic lines); other messages
    # (resumed, a thread change, skipped rows) print above the live table
    log = lambda msg: None if msg.startswith("step ") else console.print(msg, highlight=False)  # noqa: E731
    try:
        trainer = TrainingRun(compiled, base_dir, out=out, steps=steps, resume=resume, device=device,
                              precision=precision, parallel=parallel, log=log, on_record=display)
        try:
            result = trainer.fit()
        finally:
            display.close()
    except RunError as e:
        if rank == 0 and report is not None:  # every rank meets the same problem; one report is enough
            report(e.diagnostics)
        return 1
    if rank == 0:
        console.print(f"{'interrupted at' if result.interrupted else 'finished'} step {result.step}: {result.run_dir}")
    return 130 if result.interrupted else 0
