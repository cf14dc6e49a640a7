"""The data path: sources (files and in-memory datasets), media decoding, per-task datasets
and multi-task mixing."""
from .dataset import MixedBatch, MultiTaskDataset, Skipped, TaskData, column_lengths
from .mixing import MicroBatch, Mixer, MixerSampler, TaskPlan
from .sources import FileSource, MemorySource, ParquetSource, Source, open_source, shard

__all__ = ["FileSource", "MemorySource", "ParquetSource", "Source", "open_source", "shard", "TaskData",
           "MultiTaskDataset", "MixedBatch", "Skipped", "Mixer", "MixerSampler", "MicroBatch", "TaskPlan",
           "column_lengths"]
