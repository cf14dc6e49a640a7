"""Where a training step's time goes: the zoo's task file (`examples/multitask.ofa` by default)
set up as `ofac run` sets it up, then N updates timed part by part: waiting for the loader
(data), each task's forward and backward, the optimizer step; and the busiest operators of a
few of those updates under torch.profiler.

  python benchmarks/step_profile.py [--file examples/multitask.ofa] [--steps 30] [--warmup 5]

Last line: RESULT step_profile ratio=<seconds per update> data=<share> forward=<share> ...
(the ratio is not a comparison: this script measures, the benchmarks that compare cite it).
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=str(ROOT / "examples" / "multitask.ofa"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", default=None, help="fp32, bf16 or auto (default: the file's)")
    ap.add_argument("--ops", type=int, default=15, help="operators listed from the profiler")
    args = ap.parse_args()

    import torch

    from ofac.compiler import load
    from ofac.runtime.train import update
    from ofac.runtime.train.recipe import TrainingRun

    path = Path(args.file)
    compiled = load(path)
    with tempfile.TemporaryDirectory() as out:
        run = TrainingRun(compiled, path.parent, out=Path(out), steps=args.warmup + args.steps + 3,
                          precision=args.precision)
        run.setup()
        times: dict[str, float] = defaultdict(float)
        fwd: dict[str, float] = defaultdict(float)
        bwd: dict[str, float] = defaultdict(float)
        tokens = 0
        it = iter(run.loader)

        def one_update(measure: bool) -> None:
            nonlocal tokens
            pending = []
            while True:
                t = time.perf_counter()
                mixed = next(it)
                if measure:
                    times["data"] += time.perf_counter() - t
                if mixed.batch is not None:
                    pending.append((run.names[mixed.task], mixed.batch))
                if mixed.last_of_update:
                    break
            for task, batch in pending:
                t0 = time.perf_counter()
                batch = batch.to(run.device)
                loss = run.losses[task]
                with (torch.autocast(run.device.type, dtype=run.dtype) if run.dtype else contextlib.nullcontext()):
                    outputs = run.model(batch)
                terms = loss.run(outputs, batch.decoder, loss.attrs, loss.trie)
                total = loss.weight * terms.total
                t1 = time.perf_counter()
                total.backward()
                t2 = time.perf_counter()
                if measure:
                    fwd[task] += t1 - t0
                    bwd[task] += t2 - t1
                    tokens += batch.decoder.target_tokens
            t = time.perf_counter()
            update.step(run.par, run.model, run.opt, run.sched, update.Totals(), run.names, "tokens",
                        run.options.clip_norm)
            if measure:
                times["optimizer"] += time.perf_counter() - t

        for _ in range(args.warmup):
            one_update(False)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            one_update(True)
        wall = time.perf_counter() - t0
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                one_update(False)
        run.cleanup()

    per = wall / args.steps
    times["forward"], times["backward"] = sum(fwd.values()), sum(bwd.values())
    print(f"{path.name}: {args.steps} updates, {per:.3f} s each, {tokens / wall:.0f} target tokens/s, "
          f"{torch.get_num_threads()} threads, precision {run.dtype or 'fp32'}")
    print(f"{'part':<14} {'s/update':>9} {'share':>7}")
    for part in ("data", "forward", "backward", "optimizer"):
        print(f"{part:<14} {times[part] / args.steps:>9.3f} {times[part] / wall:>7.1%}")
    other = wall - sum(times[p] for p in ("data", "forward", "backward", "optimizer"))
    print(f"{'other':<14} {other / args.steps:>9.3f} {other / wall:>7.1%}")
    print(f"\n{'task':<14} {'forward':>9} {'backward':>9} {'share':>7}")
    for task in sorted(fwd, key=lambda k: -(fwd[k] + bwd[k])):
        print(f"{task:<14} {fwd[task] / args.steps:>9.3f} {bwd[task] / args.steps:>9.3f} "
              f"{(fwd[task] + bwd[task]) / wall:>7.1%}")
    print()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))
    shares = " ".join(f"{p}={times[p] / wall:.3f}" for p in ("data", "forward", "backward", "optimizer"))
    print(f"RESULT step_profile ratio={per:.3f} {shares} tokens_per_s={tokens / wall:.0f}")


if __name__ == "__main__":
    main()
