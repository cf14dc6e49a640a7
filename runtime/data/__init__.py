"""The data path: sources (files and in-memory datasets), media decoding, per-task datasets
and multi-task mixing.  Names are imported lazily: the executor imports data.media, and
data.dataset imports the executor."""
from __future__ import annotations

import importlib

_EXPORTS = {
    "FileSource": "sources", "MemorySource": "sources", "ParquetSource": "sources", "Source": "sources",
    "open_source": "sources", "shard": "sources",
    "TaskData": "rows", "MultiTaskDataset": "dataset", "MixedBatch": "dataset", "Skipped": "rows", "SkipReport": "dataset",
    "column_lengths": "dataset", "samples_of": "rows",
    "Mixer": "mixing", "MixerSampler": "mixing", "MicroBatch": "mixing", "TaskPlan": "mixing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
