"""The example zoo end to end: generate the data (`examples/make_data.py --zoo`), train one
model on every task of `examples/multitask.ofa`, score each task on its held-out split from the one
checkpoint (`ofac eval`), and report wall time and every metric against the zoo's targets.

  python benchmarks/zoo.py [--file examples/multitask.ofa | examples/catalogue.ofa] [--steps N] [--out runs/zoo-bench]
  python benchmarks/zoo.py --single [--joint runs/zoo-bench] [--out runs/zoo-single]
  python benchmarks/zoo.py --outputs [images] [speech] [motion]

`--outputs` runs the zoo's generative parts instead, each its own run and judge:
benchmarks/image_zoo.py (images.ofa: the picture grid benchmarks/image_zoo.png) and
benchmarks/speech_zoo.py (speech.ofa: benchmarks/speech_zoo.png and generated FLAC files in
benchmarks/speech_zoo/) and benchmarks/motion_zoo.py (motion.ofa: the GIF grid
benchmarks/motion_zoo.gif).

`--single` trains the same model on each task alone (same settings and steps, one run per task
under OUT/<task>) and prints each task's metric alone against the joint run's (`--joint`: its
run directory; its scores are read from scores.json, which the joint benchmark writes).

`--file examples/catalogue.ofa` runs the catalogue the same way (its generator, `make_catalogue.py`;
no targets yet: RESULT catalogue ratio=nan with every metric).

Targets (issues 7 and 17) for the full CPU run (2 cores, within 15 minutes): digits accuracy >= 0.95,
grounding IoU@0.5 >= 0.8, VQA accuracy >= 0.9, SQL execution >= 0.8, speech WER <= 0.15,
video caption accuracy >= 0.9.  Caption is also scored with BLEU-4 (sacrebleu) from the
predictions `ofac eval` writes, besides its own metric (CIDEr-D).

Last line: RESULT zoo ratio=<targets met / targets> minutes=<wall> <task>=<metric> ...
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"digits": ("accuracy", 0.95), "grounding": ("iou_acc", 0.8), "vqa": ("accuracy", 0.9),
           "sql": ("sql_execution", 0.8), "speech": ("wer", 0.15), "video_caption": ("exact_match", 0.9)}


ZOO = ROOT / "examples" / "multitask.ofa"
# the generator of each task file's data (--file)
MAKE = {"multitask.ofa": ["make_data.py", "--zoo"], "catalogue.ofa": ["make_catalogue.py"]}
# the generative zoos (`--outputs`)
OUTPUTS = {"images": "image_zoo.py", "speech": "speech_zoo.py", "motion": "motion_zoo.py"}


def log(msg: str) -> None:  # validations, and every 100th step
    if "valid" in msg or not msg.startswith("step ") or msg.split()[1].split("/")[0].endswith("00"):
        print(msg, flush=True)


def headline(scores: dict) -> tuple[str, float]:
    """A task's own metric and its value (every zoo task has one)."""
    from ofac.runtime.evaluate.metrics import task_metric

    metric = task_metric(scores)
    return metric, scores[metric]


def only_task(source: str, name: str) -> str:
    """The task file's text with every `task` block but `name`'s removed."""
    kept, skipping = [], False
    for line in source.splitlines(keepends=True):
        if line.startswith("task "):
            skipping = line.split()[1] != name
        if not skipping:
            kept.append(line)
        if skipping and line.startswith("}"):
            skipping = False
    return "".join(kept)


def train_and_score(compiled, file: Path, out: Path, steps: int | None) -> dict[str, dict]:
    """Train `compiled` (the task file `file`, whose folder its data paths start from) and score it."""
    from ofac.runtime.serve.evaluation import evaluate_run
    from ofac.runtime.train.recipe import TrainingRun

    TrainingRun(compiled, file.parent, out=out, steps=steps, log=log).fit()
    results = evaluate_run(out, file)
    (out / "scores.json").write_text(json.dumps(results, indent=1))
    return results


def single(args) -> None:
    """Each task alone against the joint model."""
    from ofac import compile_source
    from ofac.runtime.evaluate.metrics import LOWER_IS_BETTER
    from ofac.runtime.serve.evaluation import evaluate_run

    joint, file = None, args.file.resolve()
    if args.joint is not None:
        saved = args.joint / "scores.json"
        joint = json.loads(saved.read_text()) if saved.exists() else evaluate_run(args.joint, file)
    source = file.read_text()
    names = [line.split()[1] for line in source.splitlines() if line.startswith("task ")]
    alone, start = {}, time.perf_counter()
    for name in args.tasks or names:
        out = args.out / name
        if (out / "scores.json").exists():  # a finished task of an interrupted comparison
            alone[name] = json.loads((out / "scores.json").read_text())[name]
            continue
        if out.exists():
            sys.exit(f"{out} exists without scores.json: remove it or give another --out")
        compiled, diags = compile_source(only_task(source, name), str(file), file.parent)
        if compiled is None:
            sys.exit("\n".join(d.message for d in diags))
        print(f"--- {name} alone", flush=True)
        alone[name] = train_and_score(compiled, file, out, args.steps)[name]
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{'task':15s} {'metric':14s} {'alone':>7s} {'joint':>7s} {'joint better by':>16s}")
    gaps = []
    for name, scores in alone.items():
        metric, value = headline(scores)
        if joint is None or name not in joint:
            print(f"{name:15s} {metric:14s} {value:7.3f}")
            continue
        together = joint[name][metric]
        gap = (value - together) if metric in LOWER_IS_BETTER else (together - value)
        gaps.append((gap, name))
        print(f"{name:15s} {metric:14s} {value:7.3f} {together:7.3f} {gap:+16.3f}")
    print(f"wall time {minutes:.1f} min")
    worst = min(gaps) if gaps else (float("nan"), "-")
    values = " ".join(f"{n}={headline(s)[1]:.3f}" for n, s in alone.items())
    print(f"RESULT zoo_single ratio={worst[0]:.3f} worst={worst[1]} minutes={minutes:.1f} {values}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=ZOO, help="the task file (default examples/multitask.ofa)")
    ap.add_argument("--steps", type=int, default=None, help="updates (default: the file's train { steps })")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default runs/zoo-bench, runs/zoo-single)")
    ap.add_argument("--single", action="store_true", help="train each task alone and compare with --joint")
    ap.add_argument("--joint", type=Path, default=None, help="the joint run to compare with (--single)")
    ap.add_argument("--tasks", nargs="*", default=None, help="only these tasks (--single)")
    ap.add_argument("--outputs", nargs="*", choices=OUTPUTS, default=None,
                    help="run the generative zoos instead (default: both)")
    args = ap.parse_args()
    if args.outputs is not None:
        for kind in args.outputs or OUTPUTS:
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / OUTPUTS[kind])], check=True)
        return
    args.out = args.out or ROOT / "runs" / ("zoo-single" if args.single else "zoo-bench")
    start = time.perf_counter()
    if args.file.name not in MAKE:
        sys.exit(f"no data generator known for {args.file.name}; choose one of: {', '.join(MAKE)}")
    script, *flags = MAKE[args.file.name]
    subprocess.run([sys.executable, str(ROOT / "examples" / script), *flags], check=True)
    if args.single:
        return single(args)

    from ofac import load
    from ofac.runtime.evaluate.metrics import LOWER_IS_BETTER, bleu

    if args.out.exists():
        sys.exit(f"{args.out} exists: give another --out")
    results = train_and_score(load(args.file), args.file.resolve(), args.out, args.steps)
    minutes = (time.perf_counter() - start) / 60
    met, targets = 0, TARGETS if args.file.name == "multitask.ofa" else {}  # the catalogue has none yet
    print(f"\n{'task':15s} {'metric':14s} {'value':>7s}  target")
    for task, scores in results.items():
        metric = headline(scores)[0]
        target = targets.get(task)
        lower = metric in LOWER_IS_BETTER
        ok = target is not None and (scores[metric] <= target[1] if lower else scores[metric] >= target[1])
        met += ok
        shown = f"{'<=' if lower else '>='} {target[1]} {'met' if ok else 'NOT met'}" if target else "-"
        print(f"{task:15s} {metric:14s} {scores[metric]:7.3f}  {shown}")
    caption = args.out / "eval" / "valid" / "caption.jsonl"
    if caption.exists():
        rows = [json.loads(line) for line in caption.read_text().splitlines()]
        bleu4 = bleu([r["prediction"] for r in rows], [r["reference"] for r in rows])
        print(f"{'caption':15s} {'bleu4':14s} {bleu4:7.3f}  -")
    print(f"wall time {minutes:.1f} min" + (" (target: within 15 on 2 cores)" if targets else ""))
    values = " ".join(f"{t}={headline(s)[1]:.3f}" for t, s in results.items())
    ratio = f"{met / len(targets):.2f}" if targets else "nan"
    print(f"RESULT {'zoo' if targets else args.file.stem} ratio={ratio} minutes={minutes:.1f} {values}")


if __name__ == "__main__":
    main()
