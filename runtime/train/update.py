"""One update: forward and backward every micro-batch it gathered, then one optimizer step.

`loss_mean = tokens` (OFASys): the gradients are sums of the units' losses (target tokens),
divided by the update's unit count over all ranks at the step, so the update minimizes the
mean over all its units.  `loss_mean = tasks`: each task's losses are divided by its own units
in the whole update (all its micro-batches on all ranks) and by the number of tasks in it, so
the update minimizes the mean over tasks of each task's mean loss: a task with 5-token targets
weighs as much as one with 30."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from ..generate.search import Trie
from ..model.heads import LOSSES
from ..registry import attributes
from . import scst  # noqa: F401  (registers loss.scst, a loss that runs the model)


@dataclass
class TaskLoss:
    """How one task's target is trained: its `loss.<name>` implementation and attributes, the
    task's weight, and its closed set's answers (a constrained loss reads them)."""

    run: object
    attrs: dict
    trie: Trie | None = None
    reads_model: bool = False  # the loss takes (model, batch, this) and runs the model itself (SCST)
    context: dict = field(default_factory=dict)  # what such a loss needs of the run (vocab, reward scorer)

    @classmethod
    def of(cls, task, trie: Trie | None = None, context: dict | None = None) -> "TaskLoss":
        op = task.programs[0].only("loss")
        impl = LOSSES.check(op)
        return cls(impl.run, attributes(op), trie, bool(impl.extra.get("reads_model")), dict(context or {}))

    @property
    def weight(self) -> float:
        return self.attrs["weight"]


@dataclass
class Totals:
    """An update's loss and unit counts (summed over ranks before they are logged)."""

    loss: float = 0.0
    nll: float = 0.0
    units: int = 0
    per_task: dict = field(default_factory=dict)  # task -> [nll, units]
    grad_norm: float | None = None


def backward(par, model, pending: list[tuple[str, object]], losses: dict[str, TaskLoss], totals: Totals, device,
             dtype, loss_mean: str) -> None:
    """Forward and backward every micro-batch (task, batch) of one update; ranks meet on the last."""
    units = [batch.decoder.target_tokens for _, batch in pending]  # on the host: no device sync
    scales: dict[str, float] = {}
    if loss_mean == "tasks":
        counts = dict.fromkeys(losses, 0)
        for (task, _), n in zip(pending, units):
            counts[task] += n
        counts = dict(zip(counts, par.all_sum(list(counts.values()))))
        present = sum(1 for n in counts.values() if n > 0)
        scales = {task: 1.0 / (n * present) for task, n in counts.items() if n > 0}
    for i, ((task, batch), n) in enumerate(zip(pending, units)):
        with par.sync(model, i == len(pending) - 1):
            _micro_batch(model, batch.to(device), n, losses[task], totals, task, dtype, scales.get(task, 1.0))


def _micro_batch(model, batch, n: int, loss: TaskLoss, totals: Totals, task: str, dtype, scale: float) -> None:
    """Forward and backward one micro-batch of `n` units, its loss times `scale`."""
    autocast = torch.autocast(batch.decoder.inputs.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    if loss.reads_model:
        with autocast:
            terms = loss.run(model, batch, loss)
    else:
        with autocast:
            outputs = model(batch)
        terms = loss.run(outputs, batch.decoder, loss.attrs, loss.trie)
    total = loss.weight * terms.total
    (total * scale).backward()
    totals.loss += total.item()
    nll = terms.nll.item()
    totals.nll += nll
    totals.units += n
    t = totals.per_task.setdefault(task, [0.0, 0])
    t[0] += nll
    t[1] += n


def step(par, model, opt, sched, totals: Totals, tasks: list[str], loss_mean: str, clip_norm: float) -> None:
    """One optimizer step.  Each rank's gradients are sums of unit losses (`loss_mean = tokens`;
    already divided by the update's task unit counts under `tasks`); DDP / FSDP have averaged
    them over the ranks, so scaling by world / (all ranks' units) gives the gradient of the
    update's mean unit loss, as one process would compute it."""
    _sum_over_ranks(par, totals, tasks)
    units = 1 if loss_mean == "tasks" else max(1, totals.units)
    scale = par.world / units
    for p in model.parameters():
        if p.grad is not None:
            p.grad.mul_(scale)
    if clip_norm:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        totals.grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def _sum_over_ranks(par, totals: Totals, names: list[str]) -> None:
    """The update's loss and unit counts over all ranks (one small all-reduce; every rank lists
    the run's tasks in the same order)."""
    if not par.distributed:
        return
    per = [totals.per_task.get(n, [0.0, 0]) for n in names]
    flat = par.all_sum([totals.loss, totals.nll, totals.units] + [x for v in per for x in v])
    totals.loss, totals.nll, totals.units = flat[0], flat[1], int(flat[2])
    totals.per_task = {n: [flat[3 + 2 * i], int(flat[4 + 2 * i])] for i, n in enumerate(names) if flat[4 + 2 * i] > 0}
