"""The data path: sources (files and in-memory datasets), each task's rows run through the IR
executor, the run's vocabulary trained on them (`corpus`), multi-task mixing, batching
(`collate`, `targets`) and the DataLoader with its shared-memory hand-off (`loader`, `buffers`).
Names are imported lazily: `import ofac.runtime.data.sources` must not import torch."""
from __future__ import annotations

import importlib

_EXPORTS = {
    "FileSource": "sources", "MemorySource": "sources", "ParquetSource": "sources", "Source": "sources",
    "open_source": "sources", "shard": "sources",
    "TaskData": "rows", "MultiTaskDataset": "dataset", "MixedBatch": "dataset", "Skipped": "rows",
    "SkipReport": "dataset",
    "column_lengths": "dataset", "samples_of": "rows", "RunDefinition": "tasks", "TaskDefinition": "tasks",
    "as_definition": "tasks", "task_data": "tasks",
    "Mixer": "mixing", "MixerSampler": "mixing", "MicroBatch": "mixing", "TaskPlan": "mixing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
