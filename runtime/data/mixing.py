"""Multi-task mixing: which task's rows form each micro-batch of each update.

Policies (`train { mixing = ... }`):
  all          every update takes one micro-batch (times update_freq) from every task (OFASys)
  weighted     every update takes its micro-batches from one task drawn by task weight
  temperature  as weighted, drawn by dataset size ** (1/T)

Each task walks a permutation of its rows (or of the rows its datasets draw that epoch, when
they rotate files or sample by ratio) that is a pure function of (seed, task, epoch),
so the whole state is a few integers and an RNG state: `state_dict()` after update u and a
fresh Mixer loaded with it draw exactly the batches the uninterrupted run would have drawn."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskPlan:
    name: str
    size: int
    micro_batch_size: int
    update_freq: int = 1
    weight: float = 1.0
    lengths: np.ndarray | None = None  # set to bucket micro-batches by length
    # (epoch, rng) -> the rows that epoch draws (OFASys' `a,b ||| c` with sample ratios); None: each row once
    epoch_rows: object = None


@dataclass(frozen=True)
class MicroBatch:
    update: int
    task: int
    keys: tuple[tuple[int, int, int], ...]  # (task, row, epoch) dataset keys
    last_of_update: bool


class Mixer:
    def __init__(self, tasks: list[TaskPlan], policy: str = "all", temperature: float = 2.0, seed: int = 1,
                 rank: int = 0, world: int = 1, bucket_window: int = 50):
        if policy not in ("all", "weighted", "temperature"):
            raise ValueError(f"unknown mixing policy {policy!r}")
        for t in tasks:
            if t.size < t.micro_batch_size * world:
                raise ValueError(f"task `{t.name}` has {t.size} rows, fewer than one micro-batch of "
                                 f"{t.micro_batch_size} on each of {world} process(es)")
        self.tasks, self.policy, self.seed = tasks, policy, seed
        self.rank, self.world, self.bucket_window = rank, world, bucket_window
        if policy == "weighted":
            p = np.array([t.weight for t in tasks], dtype=float)
        else:
            p = np.array([t.size ** (1.0 / temperature) for t in tasks], dtype=float)
        self.probs = p / p.sum()
        self.update = 0
        self.cursor = [0] * len(tasks)  # next micro-batch of the task's current epoch
        self.epoch = [0] * len(tasks)
        self.rng = np.random.default_rng((seed, 7919))
        self._orders: dict[tuple[int, int], list[np.ndarray]] = {}

    # ------------------------------------------------------------- state

    def state_dict(self) -> dict:
        return {"update": self.update, "cursor": list(self.cursor), "epoch": list(self.epoch),
                "rng": self.rng.bit_generator.state, "policy": self.policy,
                "tasks": [t.name for t in self.tasks]}

    def load_state_dict(self, state: dict) -> None:
        if state["tasks"] != [t.name for t in self.tasks] or state["policy"] != self.policy:
            raise ValueError("the saved mixer state belongs to a run with other tasks or another mixing policy")
        self.update, self.cursor, self.epoch = state["update"], list(state["cursor"]), list(state["epoch"])
        self.rng.bit_generator.state = state["rng"]

    # ------------------------------------------------------------- drawing

    def batches(self, t: int, epoch: int) -> list[np.ndarray]:
        """The micro-batches (global, all ranks) of task t in an epoch: a pure function."""
        key = (t, epoch)
        if key not in self._orders:
            if len(self._orders) > 4 * len(self.tasks):
                self._orders.clear()
            plan = self.tasks[t]
            rng = np.random.default_rng((self.seed, t, epoch))
            if plan.epoch_rows is None:
                perm = rng.permutation(plan.size)
            else:
                rows = plan.epoch_rows(epoch, rng)
                perm = rows[rng.permutation(len(rows))]
            step = plan.micro_batch_size * self.world
            if plan.lengths is not None:  # sort within windows so a batch holds similar lengths
                win = step * self.bucket_window
                perm = np.concatenate([c[np.argsort(plan.lengths[c], kind="stable")]
                                       for c in np.array_split(perm, max(1, -(-len(perm) // win)))])
            chunks = [perm[i:i + step] for i in range(0, len(perm) - step + 1, step)]
            order = rng.permutation(len(chunks))
            self._orders[key] = [chunks[i] for i in order]
        return self._orders[key]

    def _take(self, t: int) -> np.ndarray:
        chunks = self.batches(t, self.epoch[t])
        if self.cursor[t] >= len(chunks):
            self.epoch[t] += 1
            self.cursor[t] = 0
            chunks = self.batches(t, self.epoch[t])
            if not chunks:  # only datasets sampled below one micro-batch can draw an epoch this small
                plan = self.tasks[t]
                raise ValueError(f"task `{plan.name}`: epoch {self.epoch[t]} draws fewer rows than one micro-batch "
                                 f"of {plan.micro_batch_size * self.world}; raise its `sample_ratios`")
        chunk = chunks[self.cursor[t]]
        self.cursor[t] += 1
        b = self.tasks[t].micro_batch_size
        return chunk[self.rank * b:(self.rank + 1) * b]

    def next_update(self) -> list[MicroBatch]:
        """The micro-batches of the next update, for this rank."""
        if self.policy == "all":
            chosen = list(range(len(self.tasks)))
        else:
            chosen = [int(self.rng.choice(len(self.tasks), p=self.probs))]
        out = []
        for t in chosen:
            for _ in range(self.tasks[t].update_freq):
                rows = self._take(t)  # may roll over into the next epoch
                out.append(MicroBatch(self.update, t, tuple((t, int(r), self.epoch[t]) for r in rows), False))
        out[-1] = MicroBatch(out[-1].update, out[-1].task, out[-1].keys, True)
        self.update += 1
        return out


class MixerSampler:
    """A DataLoader sampler over a Mixer, yielding MicroBatch items (use `batch_size=None`:
    workers build whole micro-batches).  The loader prefetches, so the state a checkpoint
    saves is the one recorded before the first *unconsumed* update was drawn."""

    def __init__(self, mixer: Mixer, updates: int | None = None):
        self.mixer, self.updates = mixer, updates
        self._states: dict[int, dict] = {}

    def __iter__(self):
        while self.updates is None or self.mixer.update < self.updates:
            self._states[self.mixer.update] = self.mixer.state_dict()
            yield from self.mixer.next_update()

    def state_before(self, update: int) -> dict:
        """The mixer state from which update `update` is drawn (the resume point)."""
        if update in self._states:
            state = self._states[update]
        elif self.mixer.update == update:  # not drawn yet (no prefetching): the current state
            state = self.mixer.state_dict()
        else:
            raise KeyError(f"no mixer state recorded for update {update}")
        for u in [u for u in self._states if u < update]:
            del self._states[u]
        return state
