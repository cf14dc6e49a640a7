"""ONNX Runtime versus PyTorch eager: per-example latency (batch 1) of greedy and beam-4
generation for the same tiny-preset checkpoint and the same inputs, in the same run; the two
backends must produce identical tokens.

A tiny-preset model (d 256, FFN 1024, 4+4 layers, 4 heads) is trained for a few steps on a
generated text task so the checkpoint is a real run directory, exported with `ofac export`,
and both backends answer the same held-out rows through `.inference`: PyTorch eager with
torch tensors and the torch search, ONNX Runtime through the torch-free runtime
(`ofac.runtime.serve.deployed`: numpy preprocessing, batching and search over the exported graphs).

  python benchmarks/onnx_speed.py [--rows 16] [--threads 2]

Last line: RESULT onnx_speed ratio=<the smaller of the greedy and beam-4 speed-ups>
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def make_run(root: Path) -> Path:
    from ofac import compile_source
    from ofac.runtime.train.recipe import TrainingRun

    rng = random.Random(0)
    rows = []
    for _ in range(400):
        words = rng.sample(WORDS, 12)
        rows.append({"s": " ".join(words), "t": " ".join(reversed(words[:6]))})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:380]))
    (root / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[380:]))
    source = """
task reverse {
    instruction: reverse the first words of " [TEXT:s] " -> [TEXT:t]
    train = train.jsonl
    micro_batch_size = 16
}
model { preset = tiny  vocab_size = 1000  dropout = 0.0 }
train { steps = 30  lr = 1e-3  out = run  eval_every = 1000  save_every = 1000 }
"""
    compiled, diags = compile_source(source, str(root / "t.ofa"), root)
    assert compiled is not None, [d.message for d in diags]
    TrainingRun(compiled, root).fit()
    return root / "run"


def timed(system, rows, beam: int, repeat: int) -> tuple[float, list]:
    outs = [system.inference("reverse", r, beam_size=beam, max_len=24, min_len=24) for r in rows[:2]]  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        outs = [system.inference("reverse", r, beam_size=beam, max_len=24, min_len=24) for r in rows]
        best = min(best, (time.perf_counter() - start) / len(rows))
    return best, [o.text for o in outs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from ofac.runtime.serve.answer import OFASys
    from ofac.runtime.serve.export import export

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = make_run(root)
        export(run, root / "onnx")
        rows = [{"s": json.loads(line)["s"]} for line in (root / "valid.jsonl").read_text().splitlines()][:args.rows]
        eager = OFASys.from_pretrained(run)
        from ofac.runtime.serve.deployed import load

        ort_sys = load(root / "onnx", threads=args.threads)
        ratios = {}
        for beam, name in ((1, "greedy"), (4, "beam4")):
            t_eager = t_ort = float("inf")
            for _ in range(args.repeat):  # interleaved rounds: both backends see the same machine state
                t, tok_eager = timed(eager, rows, beam, 1)
                t_eager = min(t_eager, t)
                t, tok_ort = timed(ort_sys, rows, beam, 1)
                t_ort = min(t_ort, t)
            same = sum(a == b for a, b in zip(tok_eager, tok_ort))
            ratios[name] = t_eager / t_ort
            print(f"{name:7s} batch 1: PyTorch eager {t_eager * 1000:7.1f} ms/example  ONNX Runtime "
                  f"{t_ort * 1000:7.1f} ms/example  speed-up {ratios[name]:.2f}x  identical {same}/{len(rows)}")
            if same != len(rows):
                print(f"warning: {len(rows) - same} outputs differ between the backends")
    low = min(ratios.values())
    print(f"target: >= 2x for greedy and beam 4 -> smallest {low:.2f}x")
    print("RESULT onnx_speed ratio=%.2f greedy=%.2f beam4=%.2f" % (low, ratios["greedy"], ratios["beam4"]))


if __name__ == "__main__":
    main()
