"""Captioning in OFA's two stages: `examples/caption.ofa` (cross-entropy), then
`examples/caption_scst.ofa` (self-critical sequence training from the first stage's weights),
and the CIDEr-D of each on the 100 held-out scenes of `examples/make_data.py`.

  python benchmarks/scst.py [--runs runs/scst-bench] [--steps N] [--scst-steps M] [--lr LR]

The reference is the first stage's best checkpoint, the one the second stage starts from; the
same second stage trained by cross-entropy instead (`scst = false`) is printed beside it.

Last line: RESULT scst ratio=<stage-2 CIDEr-D at its last step / stage 1's> ce=... scst=... scst_best=... more_ce=...
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def stage(path: Path, runs: Path, name: str, steps: int | None, **replace) -> list[tuple[int, float]]:
    """Train a copy of the task file `path` (in examples/, so its data paths hold) with its `out`
    and the `replace`d settings; -> its validations as (step, CIDEr-D)."""
    from ofac import compiler
    from ofac.runtime.train.recipe import TrainingRun

    text = re.sub(r"(?m)^(\s*)out = \S+", rf"\g<1>out = {runs / name}", path.read_text())
    for key, value in replace.items():
        text = re.sub(rf"(?m)^(\s*){key} = \S+", rf"\g<1>{key} = {value}", text)
    copy = EXAMPLES / f".{name}.ofa"
    copy.write_text(text)
    try:
        TrainingRun(compiler.load(copy), EXAMPLES, steps=steps,
                    log=lambda m: print(f"[{name}] {m}", flush=True) if "cider" in m or "initialized" in m
                    else None).fit()
    finally:
        copy.unlink()
    records = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["valid"]["caption"]["cider"]) for r in records if "valid" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "scst-bench")
    ap.add_argument("--steps", type=int, default=None, help="stage 1's updates (default: caption.ofa's)")
    ap.add_argument("--scst-steps", type=int, default=None, help="stage 2's updates (default: caption_scst.ofa's)")
    ap.add_argument("--lr", type=str, default=None, help="stage 2's learning rate (default: caption_scst.ofa's)")
    args = ap.parse_args()
    runs = args.runs.resolve()
    if not (EXAMPLES / "zoo" / "caption_valid.jsonl").exists():
        subprocess.run([sys.executable, str(EXAMPLES / "make_data.py")], check=True)
    for name in ("ce", "scst", "more-ce"):
        subprocess.run(["rm", "-rf", str(runs / name)], check=True)
    ce = stage(EXAMPLES / "caption.ofa", runs, "ce", args.steps)
    extra = {"init": runs / "ce"} | ({"lr": args.lr} if args.lr else {})
    scst = stage(EXAMPLES / "caption_scst.ofa", runs, "scst", args.scst_steps, **extra)
    # the same second stage by cross-entropy: what the extra updates give without SCST
    more = stage(EXAMPLES / "caption_scst.ofa", runs, "more-ce", args.scst_steps, scst="false", **extra)
    start = max(c for _, c in ce)  # the best weights: what stage 2 starts from
    print("\nCIDEr-D on the 100 held-out scenes (beam 2):")
    print("  stage 1, cross-entropy: " + ", ".join(f"step {s} {c:.3f}" for s, c in ce))
    print("  stage 2, SCST from stage 1's best: " + ", ".join(f"step {s} {c:.3f}" for s, c in scst))
    print("  stage 2 by cross-entropy instead, same steps and rate: " + ", ".join(f"step {s} {c:.3f}" for s, c in more))
    last, best = scst[-1][1], max(c for _, c in scst)
    print(f"RESULT scst ratio={last / start:.3f} ce={start:.3f} scst={last:.3f} scst_best={best:.3f} "
          f"more_ce={more[-1][1]:.3f}")


if __name__ == "__main__":
    main()
