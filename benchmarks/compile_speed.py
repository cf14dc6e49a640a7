"""Compile cost: a generated `.ofa` file of 1,000 tasks versus one of 1 task, in one run.

Target: `ofac check` of the 1,000-task file in under 1 s, i.e. the cost is linear and small
next to interpreter start-up.  `check` is the front end (parse + type check), as `cargo check`
skips code generation; the full compile that `explain`/`run` do (plus lowering to IR and
verifying every program) is timed too and printed as `full_s`.  Both files use the same mix of
instructions (every OFASys task form), and are compiled in-process after one warm-up compile
(grammar tables are built once per process, which is start-up cost, not compile cost).

  python benchmarks/compile_speed.py [--tasks 1000] [--repeat 5]

Last line: RESULT compile_speed 1000_tasks_s=<seconds> ratio=<1000-task time / 1-task time>
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import ofasys_corpus  # noqa: E402

from ofac import compiler  # noqa: E402


def task_file(n: int) -> str:
    corpus = [text for _, text in ofasys_corpus()]
    blocks = []
    for i in range(n):
        blocks.append(f"task t{i} {{\n    instruction: {corpus[i % len(corpus)]}\n"
                      f"    micro_batch_size = {1 + i % 16}\n    generate {{ beam = {1 + i % 5} }}\n}}\n")
    return "\n".join(blocks) + "model { preset = tiny }\ntrain { steps = 100 }\n"


def best_time(text: str, repeat: int, lower: bool = False) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        compiled, diags = compiler.compile_source(text, "bench.ofa", None, check_data=False, lower=lower)
        times.append(time.perf_counter() - start)
        assert compiled is not None, [d.message for d in diags if d.is_error]
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    big, one = task_file(args.tasks), task_file(1)
    best_time(one, 1)  # build the grammar tables once
    one_best, one_med = best_time(one, args.repeat * 4)
    big_best, big_med = best_time(big, args.repeat)
    full_best, full_med = best_time(big, args.repeat, lower=True)
    print(f"check, 1 task:       best {one_best * 1e3:8.2f} ms   median {one_med * 1e3:8.2f} ms")
    print(f"check, {args.tasks} tasks: best {big_best * 1e3:8.2f} ms   median {big_med * 1e3:8.2f} ms"
          f"   ({big_best / args.tasks * 1e6:.0f} us per task)")
    print(f"full compile (+ lower, verify), {args.tasks} tasks: best {full_best * 1e3:8.2f} ms"
          f"   median {full_med * 1e3:8.2f} ms")
    print(f"target: check of {args.tasks} tasks in < 1 s -> {'met' if big_best < 1.0 else 'NOT met'}")
    print(f"RESULT compile_speed {args.tasks}_tasks_s={big_best:.3f} ratio={big_best / one_best:.1f}"
          f" full_s={full_best:.3f}")


if __name__ == "__main__":
    main()
