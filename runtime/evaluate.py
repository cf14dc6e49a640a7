"""Scoring a model on a task's rows: the one code path of the trainer's validation, `ofac eval`
and the Python API, so all three give the same number on the same split.

Per task: the teacher-forced loss and token accuracy, and the task's metric on outputs
generated as the task's IR says (`generate.*` op: beam, lengths, closed-set trie), turned back
into text / boxes / objects by its `postprocess.*` op."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .collate import collate
from .data.rows import TaskData, samples_of
from .generate import Hypothesis, generate
from .model import token_losses
from .postprocess import Scorer, closed_set

__all__ = ["Evaluation", "Scorer", "closed_set", "evaluate", "samples_of"]


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
    nll = correct = tokens = 0.0
    preds, refs, rows = [], [], []
    for lo in range(0, len(data), batch_size):
        samples = samples_of(data, lo, min(lo + batch_size, len(data)))
        if samples:
            batch = collate(samples).to(device)
            logits = model(batch)
            mask = batch.loss_mask
            nll += float(token_losses(logits, batch.target, mask)[1].sum())
            correct += float((logits.argmax(-1) == batch.target)[mask].sum())
            tokens += float(mask.sum())
            if scorer.metric is not None or keep:
                hyps = generate(model, batch, scorer.generation)
                for h, meta in zip(hyps, batch.meta):
                    best = h[0] if h else Hypothesis([], float("-inf"), float("-inf"))
                    preds.append(scorer.output(best.tokens, meta))
                    refs.append(scorer.reference(meta))
                    rows.append((meta["row"], best.score))
        if progress is not None:
            progress(min(lo + batch_size, len(data)))
    scores = {"loss": nll / max(tokens, 1), "token_accuracy": correct / max(tokens, 1)}
    if scorer.metric is not None and refs:
        scores[scorer.name] = float(scorer.metric(preds, refs))
    predictions = []
    if keep:
        for (row, score), p, r in zip(rows, preds, refs):
            reference = r[0] if scorer.name == "sql_execution" else r
            predictions.append({"row": row, "prediction": p, "reference": reference, "score": score})
    return Evaluation(scores, predictions)
