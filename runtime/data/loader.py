"""The loader: a DataLoader whose workers build whole micro-batches in the order a Mixer
draws them."""
from __future__ import annotations

import torch

from .dataset import MultiTaskDataset, TaskData
from .mixing import Mixer, MixerSampler, TaskPlan


def build_loader(tasks: list[TaskData], plans: list[TaskPlan], *, policy: str = "all", temperature: float = 2.0,
                 seed: int = 1, num_workers: int = 0, updates: int | None = None, rank: int = 0, world: int = 1,
                 mixer_state: dict | None = None, device: str = "cpu"):
    """(DataLoader, MixerSampler).  Iterating the loader yields MixedBatch items; pixels
    arrive as uint8 (pinned for an accelerator) and `Batch.to(device)` normalizes them."""
    on_cpu = str(device).startswith("cpu")
    mixer = Mixer(plans, policy, temperature, seed, rank, world)
    if mixer_state is not None:
        mixer.load_state_dict(mixer_state)
    sampler = MixerSampler(mixer, updates)
    loader = torch.utils.data.DataLoader(
        MultiTaskDataset(tasks, seed), sampler=sampler, batch_size=None,
        num_workers=num_workers, pin_memory=not on_cpu, persistent_workers=False,
        prefetch_factor=4 if num_workers else None,
        worker_init_fn=_worker_init if num_workers else None,
        # its own generator: starting an iterator must not draw from the global torch RNG, or a
        # resumed run's dropout would diverge from the uninterrupted run's
        generator=torch.Generator().manual_seed(seed))
    return loader, sampler


def _worker_init(worker_id: int) -> None:
    # preprocessing parallelism comes from the workers; one intra-op thread each avoids
    # oversubscribing the cores
    torch.set_num_threads(1)
