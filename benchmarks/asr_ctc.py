"""Speech recognition with and without OFASys' encoder CTC: the same model, data, seed and steps,
trained once on `[TEXT:text]` (the decoder's cross-entropy alone) and once on
`[TEXT:text,preprocess=text_phone]` (plus the CTC of the encoder's audio states over the text's
espeak-ng phonemes, OFASys' speech_to_text_loss), then the word error rate of each on the 60
held-out phrases of `examples/make_speech.py` (phrases training never saw, greedy decoding).

  python benchmarks/asr_ctc.py [--steps 300] [--runs runs/asr-ctc]

The model and data are benchmarks/speech_judge.ofa's (d 128, 3+2 layers, fp32, 32 rows a step);
the speech data is generated first if it is missing (about a minute on two idle cores).

Last line: RESULT asr_ctc ratio=<WER without CTC / WER with it> steps=... wer_text=... wer_text_phone=...
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUDGE = Path(__file__).resolve().parent / "speech_judge.ofa"
DATA = ROOT / "examples" / "speech"
TARGETS = {"text": "[TEXT:text]", "text_phone": "[TEXT:text,preprocess=text_phone]"}


def task_file(variant: str, steps: int, out: Path) -> str:
    """speech_judge.ofa with the variant's target, `steps` updates and its own run directory."""
    src = JUDGE.read_text()
    src = src.replace("-> [TEXT:text]", "-> " + TARGETS[variant])
    src = src.replace("../examples/speech/", str(DATA) + "/")
    src = re.sub(r"(?m)^(\s*)steps = \d+", rf"\g<1>steps = {steps}", src)
    src = re.sub(r"warmup = \d+", f"warmup = {min(100, steps // 5)}", src)
    src = re.sub(r"eval_every = \d+", f"eval_every = {steps}", src)
    return re.sub(r"(?m)^(\s*)out = \S+", rf"\g<1>out = {out}", src)


def train(variant: str, steps: int, runs: Path) -> tuple[float, float]:
    """-> (held-out WER at the last step, minutes of training)."""
    from ofac import compiler
    from ofac.runtime.train.recipe import TrainingRun

    run = runs / variant
    path = runs / f"{variant}.ofa"
    path.write_text(task_file(variant, steps, run))
    compiled = compiler.load(path)
    t0 = time.perf_counter()
    TrainingRun(compiled, runs, log=lambda m: print(f"[{variant}] {m}", flush=True)
                if not m.startswith("step ") or m.split()[1].split("/")[0].endswith("00") or "wer" in m
                else None).fit()
    minutes = (time.perf_counter() - t0) / 60
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    wer = [r["valid"]["asr"]["wer"] for r in records if "valid" in r][-1]
    return wer, minutes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "asr-ctc")
    args = ap.parse_args()
    args.runs = args.runs.resolve()
    if not (DATA / "asr_valid.jsonl").exists():
        subprocess.run([sys.executable, str(ROOT / "examples" / "make_speech.py"), "--out", str(DATA)], check=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    for old in args.runs.glob("*/"):
        subprocess.run(["rm", "-rf", str(old)], check=True)  # a fresh run of each
    found = {v: train(v, args.steps, args.runs) for v in TARGETS}
    print(f"\nheld-out WER after {args.steps} steps (60 phrases never trained on, greedy):")
    for v, (wer, minutes) in found.items():
        print(f"  {TARGETS[v]:<36} WER {wer:.3f}   {minutes:.1f} min")
    (wt, mt), (wp, mp) = found["text"], found["text_phone"]
    print(f"RESULT asr_ctc ratio={wt / max(wp, 1e-9):.2f} steps={args.steps} wer_text={wt:.3f} "
          f"wer_text_phone={wp:.3f} minutes_text={mt:.1f} minutes_text_phone={mp:.1f}")


if __name__ == "__main__":
    main()
