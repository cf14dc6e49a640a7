"""An exponential moving average of the weights (`train { ema = 0.999 }`): what validation
scores and `checkpoints/best` keeps."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..store.checkpoint import renamed
from ..store.files import CheckpointError


class EMA:
    """float32 shadow weights, updated after every optimizer step."""

    FILE = "ema.safetensors"

    def __init__(self, model, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(self.decay).add_(v.float(), alpha=1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def load(self, ckpt: Path, model) -> None:
        path = ckpt / self.FILE
        if not path.exists():
            raise CheckpointError("E0110", "the checkpoint has no EMA weights (the run was started without ema)",
                                  path, help="resume with the task file that started this run")
        loaded = renamed(load_file(str(path)), model)
        for k in self.shadow:
            self.shadow[k].copy_(loaded[k])

    @contextlib.contextmanager
    def swapped_in(self, model):
        """The EMA weights in `model` for the duration (validation), its own weights after."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict({k: v.to(saved[k].dtype) for k, v in self.shadow.items()})
        try:
            yield model
        finally:
            model.load_state_dict(saved)
