"""Instruction following in the Natural-Instructions form generalizes to sub-tasks never trained
on: a model trained on the catalogue's word-list sub-tasks answers the held-out ones (each kind of
operation on the word pool it never saw that kind with) better than chance, which answers each
held-out row with the answer of another held-out row of the same kind."""
from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from ofac import compile_source
from ofac.runtime.evaluate.metrics import rouge_l
from ofac.runtime.serve.evaluation import evaluate_run
from ofac.runtime.train.recipe import TrainingRun

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import make_catalogue  # noqa: E402


def chance(rows: list[dict], draws: int = 5) -> float:
    """ROUGE-L of answering each row with the target of a random other row of the same kind."""
    kinds = defaultdict(list)
    for row in rows:
        kinds[row["task_name"]].append(row["tgt"])
    scores = []
    for seed in range(draws):
        rng, preds, refs = random.Random(seed), [], []
        for targets in kinds.values():
            for i, target in enumerate(targets):
                preds.append(targets[rng.choice([j for j in range(len(targets)) if j != i])])
                refs.append(target)
        scores.append(rouge_l(preds, refs))
    return sum(scores) / draws


def test_chance_answers_another_row_of_the_same_kind():
    rows = [{"task_name": "first", "tgt": "a"}, {"task_name": "first", "tgt": "b"},
            {"task_name": "sort", "tgt": "x y"}, {"task_name": "sort", "tgt": "x y"}]
    assert chance(rows) == pytest.approx(0.5)  # the firsts never match, the sorts always


@pytest.mark.slow
def test_unseen_sub_tasks_are_answered_better_than_chance(tmp_path):
    rng = random.Random(0)
    for split, n in (("train", 2000), ("valid", 100)):
        rows = [make_catalogue.natural_instructions(rng, split == "valid") for _ in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = """
task ni {
    instruction: [TEXT:instruction] [TEXT:examples] [TEXT:src] -> [TEXT:tgt,max_length=128]
    train = train.jsonl
    valid = valid.jsonl
    metric = rouge
    micro_batch_size = 32
    generate { beam = 1  max_len = 16 }
}
model {
    d_model = 128  ffn_dim = 512  encoder_layers = 3  decoder_layers = 3  heads = 4  vocab_size = 800  dropout = 0.0
}
train {
    steps = 800  lr = 1e-3  warmup = 100  precision = fp32  eval_every = 800  save_every = 800  out = run  seed = 0
}
"""
    compiled, diags = compile_source(source, str(tmp_path / "ni.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    (tmp_path / "ni.ofa").write_text(source)
    TrainingRun(compiled, tmp_path).fit()
    score = evaluate_run(tmp_path / "run", tmp_path / "ni.ofa", checkpoint="latest")["ni"]["rouge"]
    base = chance(rows)
    print(f"unseen sub-tasks: ROUGE-L {score:.3f} against chance {base:.3f}")
    # measured: 0.624 against a chance of 0.306 (0.46 at 600 steps, 0.29 at 400: the copying is learned late)
    assert score > base + 0.1, (score, base)
