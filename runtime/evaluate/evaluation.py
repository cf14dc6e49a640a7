"""Scoring a model on a task's rows: the one code path of the trainer's validation, `ofac eval`
and the Python API, so all three give the same number on the same split.

Per task: the teacher-forced loss and accuracy its output head reports (the token head: NLL
and token accuracy, over the closed set's tokens where the task trains constrained to it), and
the task's metric on outputs generated as the task's IR says (`generate.*` op: beam, lengths,
closed-set trie), turned into answers by its `postprocess.*` op."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.collate import collate
from ..data.rows import TaskData, samples_of
from ..generate.eager import generate
from ..generate.search import Hypothesis
from ..threads import govern
from .scorer import Scorer

__all__ = ["Evaluation", "evaluate"]


@dataclass
class Evaluation:
    scores: dict
    predictions: list[dict] = field(default_factory=list)  # per row: row, prediction, reference, score


@torch.no_grad()
def evaluate(model, data: TaskData, scorer: Scorer, device, batch_size: int = 16, keep: bool = False,
             progress=None) -> Evaluation:
    """Score `model` on every row of `data`.  `keep`: also return each row's prediction;
    `progress(n)`: called with the number of rows done after each batch."""
    model.eval()
    totals = {"nll": 0.0, "correct": 0.0, "units": 0.0}
    preds, refs, rows = [], [], []
    for lo in range(0, len(data), batch_size):
        samples = samples_of(data, lo, min(lo + batch_size, len(data)))
        govern()
        if samples:
            batch = collate(samples).to(device)
            numbers = model.heads[batch.head].teacher_forced(model(batch), batch.decoder, scorer.teacher_trie)
            for k in totals:
                totals[k] += numbers[k]
            if scorer.metric is not None or keep:
                hyps = generate(model, batch, scorer.generation)
                for h, meta in zip(hyps, batch.meta):
                    best = h[0] if h else Hypothesis([], float("-inf"), float("-inf"))
                    preds.append(scorer.output(best.tokens, meta))
                    refs.append(scorer.reference(meta))
                    rows.append((meta["row"], best.score))
        if progress is not None:
            progress(min(lo + batch_size, len(data)))
    units = max(totals["units"], 1)
    scores = {"loss": totals["nll"] / units, "token_accuracy": totals["correct"] / units}
    if scorer.metric is not None and refs:
        scores[scorer.name] = float(scorer.metric(preds, refs))
    predictions = []
    if keep:
        for (row, score), p, r in zip(rows, preds, refs):
            reference = r[0] if scorer.name == "sql_execution" else r
            predictions.append({"row": row, "prediction": p, "reference": reference, "score": score})
    return Evaluation(scores, predictions)
