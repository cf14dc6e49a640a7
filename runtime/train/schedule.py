"""The optimizer and its learning-rate schedule: AdamW (no weight decay on biases and norms),
linear warm-up, then cosine, linear or no decay."""
from __future__ import annotations

import math

import torch

from .options import TrainOptions


def lr_factor(steps: int, warm: int, schedule: str):
    """The learning rate at each step as a fraction of the peak."""
    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, steps - warm))
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "polynomial":
            return 1.0 - progress
        return 1.0
    return factor


def build_optimizer(model, options: TrainOptions):
    """(AdamW, its LambdaLR schedule)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]  # no decay on biases and norms
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": options.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=options.lr, betas=(0.9, 0.98))
    factor = lr_factor(options.steps, options.warmup_steps, options.schedule)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def resume_schedule(opt, sched, step: int) -> None:
    """Continue the schedule at `step` (a resumed run)."""
    sched.last_epoch = step
    for group, base, fn in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas):
        group["lr"] = base * fn(step)
    sched._last_lr = [g["lr"] for g in opt.param_groups]
