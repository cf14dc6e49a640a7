"""One task's rows, read lazily from its sources and run through its IR, without torch:
the training datasets (dataset.py), validation and both inference backends read rows
through `TaskData` and `samples_of`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ofac.datafile import Dataset

from ..errors import DataError, NotSupportedYet
from ..exec.run import TaskRunner
from ..exec.sample import Sample
from .sources import Source


@dataclass
class Skipped:
    """A row dropped under `on_error = skip`, reported at the end of the epoch."""

    task: str
    file: str
    row: int | None
    message: str
    epoch: int = 0


class TaskData:
    """One task's rows (its files' rows, concatenated: row i of the task is row i - offset of
    its file) and how to run them; `datasets` say which rows an epoch draws (OFASys' `a,b ||| c`
    with sample ratios; by default every row once)."""

    def __init__(self, runner: TaskRunner, sources: list[Source], on_error: str = "fail",
                 datasets: list[Dataset] | None = None):
        self.runner, self.sources, self.on_error = runner, list(sources), on_error
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])
        self.datasets = datasets or [Dataset((tuple(range(len(self.sources))),))]

    @property
    def every_row_each_epoch(self) -> bool:
        return len(self.datasets) == 1 and self.datasets[0].ratio == 1.0 and \
            self.datasets[0].epochs == (tuple(range(len(self.sources))),)

    def epoch_rows(self, epoch: int, rng: np.random.Generator) -> np.ndarray:
        """The rows epoch `epoch` draws, unshuffled: for each dataset, the files of its turn
        (`epochs[epoch % n]`), `ratio` times over (the fractional part a random subset by `rng`)."""
        parts = []
        for d in self.datasets:
            rows = np.concatenate([np.arange(self.offsets[k], self.offsets[k + 1]) for k in
                                   d.epochs[epoch % len(d.epochs)]])
            whole, part = divmod(int(round(len(rows) * d.ratio)), max(1, len(rows)))
            parts += [np.tile(rows, whole), rng.permutation(rows)[:part]]
        return np.concatenate(parts).astype(np.int64)

    @property
    def name(self) -> str:
        return self.runner.task.task

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[Source, int]:
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.sources[k], i - int(self.offsets[k])

    def raw(self, i: int) -> dict:
        src, j = self.locate(i)
        return src.row(j)

    def readable(self, i: int) -> dict | None:
        """Row i's cells; None for a line that cannot be read under `on_error = skip` (its
        sample is skipped and counted), a DataError otherwise."""
        try:
            return self.raw(i)
        except DataError:
            if self.on_error == "skip":
                return None
            raise

    def sample(self, i: int, rng: np.random.Generator, epoch: int = 0) -> Sample | Skipped:
        src, j = self.locate(i)
        try:
            row = src.row(j)
            return self.runner(row, rng, src.base_dir, (src.name, src.row_number(j)))
        except NotSupportedYet:
            raise
        except DataError as err:
            if self.on_error == "skip":
                return Skipped(self.name, src.name, err.row, str(err).split("\n")[0], epoch)
            raise


def samples_of(data: TaskData, lo: int, hi: int) -> list:
    """Rows lo..hi-1 as samples; rows skipped by `on_error = skip` drop out."""
    out = [data.sample(i, np.random.default_rng((0, i))) for i in range(lo, hi)]
    return [s for s in out if hasattr(s, "encoder")]
