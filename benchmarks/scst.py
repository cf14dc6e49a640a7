"""Captioning in OFA's two stages: `examples/caption.ofa` (cross-entropy), then
`examples/caption_scst.ofa` (self-critical sequence training from the first stage's weights),
and the CIDEr-D of each on the 100 held-out scenes of `examples/make_data.py` (validation during
training), then of the final weights on `--held-out` (default 1000) scenes never trained on,
with each stage-2 run's difference from stage 1 scene by scene and its standard error: 100
scenes vary by about 0.15, more than either second stage moves the score.

  python benchmarks/scst.py [--runs runs/scst-bench] [--steps N] [--scst-steps M] [--lr LR] [--held-out N]

The reference is the first stage's best checkpoint, the one the second stage starts from; the
same second stage trained by cross-entropy instead (`scst = false`) is printed beside it.

Last line: RESULT scst ratio=<stage 2's CIDEr-D / stage 1's, on the --held-out scenes> ce=... scst=... more_ce=...
  scst_gain=... scst_se=... (and the same for more_ce), then the validations' valid_ce= valid_scst= valid_more_ce=
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
    return validations(runs / name)


def validations(run: Path) -> list[tuple[int, float]]:
    """The run's validations as (step, CIDEr-D on the 100 valid scenes)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["valid"]["caption"]["cider"]) for r in records if "valid" in r]


def held_out(runs: Path, n: int) -> Path:
    """A task file whose caption `valid` split is `n` scenes of make_data.py never trained on (the
    scenes after the 3000 training ones: its first 100 are the zoo's own valid scenes)."""
    out = runs / "held-out"
    subprocess.run([sys.executable, str(EXAMPLES / "make_data.py"), "--out", str(out), "--valid", str(n)],
                   check=True, stdout=subprocess.DEVNULL)
    trained = (EXAMPLES / "zoo" / "caption_train.jsonl").read_text()
    assert (out / "caption_train.jsonl").read_text() == trained, "the generator drew other training scenes"
    text = re.sub(r"(?m)^(\s*)valid = \S+", rf"\g<1>valid = {out / 'caption_valid.jsonl'}",
                  (EXAMPLES / "caption_scst.ofa").read_text())
    path = out / "caption.ofa"
    path.write_text(re.sub(r"(?m)^(\s*)train = \S+", rf"\g<1>train = {out / 'caption_train.jsonl'}", text))
    return path


def scene_scores(run: Path, task_file: Path, checkpoint: str) -> list[float]:
    """CIDEr-D of each held-out scene's beam-2 caption by the run's `checkpoint`, document
    frequencies over the held-out references (as the task's metric computes them)."""
    from ofac.runtime.evaluate.metrics import CiderD, several
    from ofac.runtime.serve.evaluation import evaluate_run

    folder = run / "eval" / "held-out"
    evaluate_run(run, task_file, checkpoint=checkpoint, out=folder)
    rows = [json.loads(line) for line in (folder / "caption.jsonl").read_text().splitlines()]
    refs = [several(r["reference"]) for r in rows]
    cider = CiderD(refs)
    return [cider.score(r["prediction"], ref) for r, ref in zip(rows, refs)]


def paired(base: list[float], other: list[float]) -> tuple[float, float]:
    """The mean scene-by-scene difference other - base and its standard error."""
    d = [b - a for a, b in zip(base, other)]
    mean = sum(d) / len(d)
    return mean, (sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "scst-bench")
    ap.add_argument("--steps", type=int, default=None, help="stage 1's updates (default: caption.ofa's)")
    ap.add_argument("--scst-steps", type=int, default=None, help="stage 2's updates (default: caption_scst.ofa's)")
    ap.add_argument("--lr", type=str, default=None, help="stage 2's learning rate (default: caption_scst.ofa's)")
    ap.add_argument("--held-out", type=int, default=1000, help="scenes never trained on that scores the final weights")
    ap.add_argument("--reuse", action="store_true", help="score the runs already in --runs again, without training")
    args = ap.parse_args()
    runs = args.runs.resolve()
    if not (EXAMPLES / "zoo" / "caption_valid.jsonl").exists():
        subprocess.run([sys.executable, str(EXAMPLES / "make_data.py")], check=True)
    if args.reuse:
        ce, scst, more = (validations(runs / name) for name in ("ce", "scst", "more-ce"))
    else:
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
    task_file = held_out(runs, args.held_out)
    base = scene_scores(runs / "ce", task_file, "best")
    finals = {name: scene_scores(runs / name, task_file, "latest") for name in ("scst", "more-ce")}
    mean = sum(base) / len(base)
    print(f"\nCIDEr-D on {len(base)} held-out scenes: stage 1 {mean:.3f}")
    fields = []
    for name, scores in finals.items():
        gain, se = paired(base, scores)
        print(f"  {name}: {sum(scores) / len(scores):.3f}, {gain:+.3f} +- {se:.3f} scene by scene")
        key = name.replace("-", "_")
        fields += [f"{key}={sum(scores) / len(scores):.3f}", f"{key}_gain={gain:.3f}", f"{key}_se={se:.3f}"]
    ratio = sum(finals["scst"]) / sum(base)
    print(f"RESULT scst ratio={ratio:.3f} ce={mean:.3f} " + " ".join(fields)
          + f" valid_ce={start:.3f} valid_scst={scst[-1][1]:.3f} valid_more_ce={more[-1][1]:.3f}")


if __name__ == "__main__":
    main()
