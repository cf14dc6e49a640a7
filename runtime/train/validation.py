"""Validation during training: every task scored on its valid split (the same `evaluate` as
`ofac eval`), one number to choose the best checkpoint by, and patience."""
from __future__ import annotations

from dataclasses import dataclass

from ..data.rows import TaskData
from ..evaluate.evaluation import evaluate
from ..evaluate.metrics import LOWER_IS_BETTER
from ..evaluate.scorer import Scorer, closed_set


class Validation:
    """Scores a model on each task's valid rows.  A task's Scorer (its closed-set trie may read
    every training row) is built once per run."""

    def __init__(self, run, device, batch_size: int = 16):
        self.run, self.device, self.batch_size = run, device, batch_size
        self.scorers: dict[str, Scorer] = {}

    def scorer(self, name: str, vocab, train: TaskData | None = None, answers=None, resources=None) -> Scorer:
        if name not in self.scorers:
            task = self.run.task(name)
            self.scorers[name] = Scorer(task, vocab, answers if answers is not None else closed_set(task, train),
                                        resources=resources)
        return self.scorers[name]

    def __call__(self, model, valid: dict[str, TaskData], train: dict[str, TaskData] | None = None) -> dict:
        out = {}
        for name, data in valid.items():
            scorer = self.scorer(name, data.runner.vocab, (train or {}).get(name), resources=data.runner.resources)
            out[name] = evaluate(model, data, scorer, self.device, self.batch_size).scores
        model.train()
        return out

    def score(self, valid: dict) -> float:
        """One number to pick the best checkpoint by: the mean of the tasks' metrics (signed so
        that higher is better), or minus the loss for a task without a decoded metric."""
        scores = []
        for task, r in valid.items():
            name = self.run.task(task).get("metric")
            if name in r:
                scores.append(-r[name] if name in LOWER_IS_BETTER else r[name])
            else:
                scores.append(-r["loss"])
        return sum(scores) / max(1, len(scores))


@dataclass
class Best:
    """The best validation score so far and how many validations since it (early stopping)."""

    patience: int = 0  # 0: never stop
    score: float | None = None
    stale: int = 0

    def improves(self, score: float) -> bool:
        return self.score is None or score > self.score

    def record(self, score: float) -> bool:
        """Note a validation's score; -> whether training should go on."""
        if self.improves(score):
            self.score, self.stale = score, 0
        else:
            self.stale += 1
        return not (self.patience and self.stale >= self.patience)
