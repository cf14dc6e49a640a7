"""Map-style datasets over tasks.  An item is `(task index, row index)`; the row is read
lazily from its source and run through the task's IR.  Per-example randomness (masking,
augmentation, template choice) is seeded by (seed, epoch, task, row), so an example is the
same in every worker, on every rank and after a resume."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..exec.sample import Sample
from .collate import Batch, collate
from .mixing import MicroBatch
from .rows import Skipped, TaskData  # noqa: F401 (re-exported)


class SkipReport:
    """Tallies skipped rows per (task, epoch); the trainer prints `epoch_summary` when a
    task's epoch ends, so nothing is dropped silently."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], list[Skipped]] = {}

    def add(self, skipped: list[Skipped]) -> None:
        for s in skipped:
            self.rows.setdefault((s.task, s.epoch), []).append(s)

    def epoch_summary(self, task: str, epoch: int, examples: int = 3) -> str | None:
        rows = self.rows.pop((task, epoch), [])
        if not rows:
            return None
        files = sorted({s.file for s in rows})
        lines = [f"task `{task}` epoch {epoch}: skipped {len(rows)} bad row{'s' * (len(rows) != 1)} "
                 f"(on_error = skip) in {', '.join(files)}"]
        lines += [f"  {s.file} row {s.row}: {s.message}" for s in rows[:examples]]
        if len(rows) > examples:
            lines.append(f"  ... and {len(rows) - examples} more")
        return "\n".join(lines)


class MultiTaskDataset(torch.utils.data.Dataset):
    """Indexable by (task index, row index); see `Mixer` for which indices form a batch."""

    def __init__(self, tasks: list[TaskData], seed: int = 1):
        # pixels stay uint8 until Batch.to(device) normalizes them, on the CPU too: a float
        # batch is 4x the bytes to hand from a worker to the main process through shared
        # memory, which cost more than the normalization (benchmarks/data_throughput.py)
        self.tasks, self.seed = tasks, seed

    def __len__(self) -> int:
        return sum(len(t) for t in self.tasks)

    def sample(self, key: tuple[int, int, int]) -> Sample | Skipped:
        task, row, epoch = key
        rng = np.random.default_rng((self.seed, epoch, task, row))
        return self.tasks[task].sample(row, rng, epoch)

    def __getitem__(self, mb: MicroBatch) -> Batch | None:
        """A whole micro-batch, built in the worker: samples, then collation."""
        results = [self.sample(k) for k in mb.keys]
        samples = [r for r in results if isinstance(r, Sample)]
        skipped = [r for r in results if isinstance(r, Skipped)]
        batch = collate(samples) if samples else None
        return MixedBatch(mb.update, mb.task, mb.last_of_update, batch, skipped)


@dataclass
class MixedBatch:
    """What the loader yields: a micro-batch (None if every row was skipped), where it falls
    in the schedule, and the rows skipped under `on_error = skip`."""

    update: int
    task: int
    last_of_update: bool
    batch: Batch | None
    skipped: list[Skipped]

    def pin_memory(self) -> "MixedBatch":
        """Called by the DataLoader's pinning thread (device loaders only)."""
        if self.batch is not None:
            self.batch = self.batch.pin_memory()
        return self


def column_lengths(task: TaskData, columns: list[str]) -> np.ndarray:
    """A cheap length key per row (characters of its text columns), for length bucketing."""
    out = np.zeros(len(task), dtype=np.int64)
    for i in range(len(task)):
        row = task.readable(i)  # None: an unreadable line under on_error = skip (it is skipped when met)
        if row is None:
            continue
        out[i] = sum(len(str(row.get(c, ""))) for c in columns)
    return out


def media_root(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path).resolve()
