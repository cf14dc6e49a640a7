"""The example zoo end to end: generate the data (`examples/make_data.py --zoo`), train one
model on every task of `examples/zoo.ofa`, score each task on its held-out split from the one
checkpoint (`ofac eval`), and report wall time and every metric against the zoo's targets.

  python benchmarks/zoo.py [--steps N] [--out runs/zoo-bench]

Targets (issue 7) for the full CPU run (2 cores, under 60 minutes): digits accuracy >= 0.95,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="updates (default: the file's train { steps })")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "zoo-bench")
    args = ap.parse_args()
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_data.py"), "--zoo"], check=True)

    from ofac import load
    from ofac.runtime.inference import evaluate_run
    from ofac.runtime.metrics import LOWER_IS_BETTER, bleu
    from ofac.runtime.trainer import Trainer

    if args.out.exists():
        sys.exit(f"{args.out} exists: give another --out")
    def log(msg: str) -> None:  # validations, and every 100th step
        if "valid" in msg or not msg.startswith("step ") or msg.split()[1].split("/")[0].endswith("00"):
            print(msg, flush=True)

    Trainer(load(ROOT / "examples" / "zoo.ofa"), ROOT / "examples", out=args.out, steps=args.steps, log=log).fit()
    results = evaluate_run(args.out, ROOT / "examples" / "zoo.ofa")
    minutes = (time.perf_counter() - start) / 60
    met = 0
    print(f"\n{'task':15s} {'metric':14s} {'value':>7s}  target")
    for task, scores in results.items():
        metric = next(k for k in scores if k not in ("loss", "token_accuracy"))
        target = TARGETS.get(task)
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
    print(f"wall time {minutes:.1f} min (target: under 60 on 2 cores)")
    values = " ".join(f"{t}={next(v for k, v in s.items() if k not in ('loss', 'token_accuracy')):.3f}"
                      for t, s in results.items())
    print(f"RESULT zoo ratio={met / len(TARGETS):.2f} minutes={minutes:.1f} {values}")


if __name__ == "__main__":
    main()
