"""The `train { }` settings as a typed, frozen object: every field the training recipe reads,
with the schema's defaults (`ofac.settings.TRAIN`; a test keeps the two in step)."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from ..errors import DataError


def max_steps() -> int | None:
    """$OFAC_MAX_STEPS: at most this many updates in any run (None when unset)."""
    value = os.environ.get("OFAC_MAX_STEPS")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise DataError("E0121", f"OFAC_MAX_STEPS={value!r} is not a positive number of steps",
                        help="unset it, or give a whole number such as OFAC_MAX_STEPS=2")
    return int(value)


@dataclass(frozen=True)
class TrainOptions:
    steps: int = 1000
    lr: float = 3e-4
    warmup: float = 0.06  # a fraction of steps (< 1) or a number of steps
    schedule: str = "cosine"  # cosine | polynomial | constant
    weight_decay: float = 0.01
    clip_norm: float = 1.0  # 0: off
    precision: str = "auto"  # auto | fp32 | bf16
    mixing: str = "all"  # all | weighted | temperature
    temperature: float = 2.0
    loss_mean: str = "tokens"  # tokens | tasks
    bucket_by_length: bool = False
    seed: int = 1
    init: str | None = None  # a run directory whose weights and tokenizer start this run
    ema: float = 0.0  # 0: off
    eval_every: int = 500
    save_every: int = 500
    keep_last: int = 2
    patience: int = 0  # 0: never stop early
    out: str = "runs/ofac"
    device: str = "auto"  # auto | cpu | cuda
    parallel: str = "ddp"  # ddp | fsdp
    num_workers: int = 0

    @classmethod
    def from_settings(cls, train: dict, **overrides) -> "TrainOptions":
        """From a train block's resolved values; `overrides` (the command line's, None: not
        given) win; the environment's $OFAC_MAX_STEPS caps the steps (smoke runs of examples
        whose settings are for a full run, such as the documentation's tests)."""
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in train.items() if k in names}
        options = replace(cls(**given), **{k: v for k, v in overrides.items() if v is not None})
        cap = max_steps()
        return replace(options, steps=min(options.steps, cap)) if cap else options

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup * self.steps) if self.warmup < 1 else int(self.warmup)
