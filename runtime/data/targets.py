"""Batching each output head's targets (the data half of a head, after `exec.targets`), as
numpy arrays: the PyTorch collate wraps them as tensors, the torch-free runtime uses them as
they are.  No torch."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..vocab.tokenizer import PAD


@dataclass
class TokenBatch:
    """The token head's targets of a batch: B rows padded to the longest, L positions."""

    inputs: object  # [B, L] int64: BOS-first decoder input, PAD-padded
    target: object  # [B, L] int64: PAD where there is no target token
    loss_mask: object  # [B, L] bool: positions that carry loss
    prefix: object  # [B] int64: forced prefix lengths
    # a text_phone target's CTC (None without): phonemes [B, P] int64 (offsets into the phone
    # tokens, the blank 0; 0-padded), their counts [B], and [3]: the encoder segment CTC reads,
    # the first phone token id and the number of phone tokens
    phones: object = None
    phone_lengths: object = None
    ctc: object = None

    def map(self, fn) -> "TokenBatch":
        """The same batch with `fn` applied to every array (to a device, to tensors)."""
        return TokenBatch(*(None if getattr(self, f.name) is None else fn(getattr(self, f.name)) for f in fields(self)))

    @property
    def target_tokens(self) -> int:
        return int(self.loss_mask.sum())


def token_batch(targets: list) -> TokenBatch:
    """TokenTargets -> a TokenBatch, filled in numpy in one pass."""
    longest = max(len(t.target) for t in targets)
    inputs = np.full((len(targets), longest), PAD, dtype=np.int64)
    target = np.full((len(targets), longest), PAD, dtype=np.int64)
    mask = np.zeros((len(targets), longest), dtype=np.bool_)
    for i, t in enumerate(targets):
        n = len(t.target)
        inputs[i, :n], target[i, :n], mask[i, :n] = t.inputs, t.target, t.loss_mask
    batch = TokenBatch(inputs, target, mask, np.array([t.prefix for t in targets], dtype=np.int64))
    if targets[0].phones is not None:  # one task per batch: all rows or none have phonemes
        lengths = np.array([len(t.phones) for t in targets], dtype=np.int64)
        phones = np.zeros((len(targets), max(1, int(lengths.max()))), dtype=np.int64)
        for i, t in enumerate(targets):
            phones[i, :len(t.phones)] = t.phones
        batch.phones, batch.phone_lengths = phones, lengths
        batch.ctc = np.array(targets[0].ctc, dtype=np.int64)
    return batch


@dataclass
class FrameBatch:
    """The frames head's targets of a batch: B rows of T steps (padded with zeros), F values a step."""

    inputs: object  # [B, T, F] float32: teacher-forced decoder input (a zero frame first)
    target: object  # [B, T, F] float32
    loss_mask: object  # [B, T] bool: steps that carry loss
    lengths: object  # [B] int64: steps per row

    def map(self, fn) -> "FrameBatch":
        return FrameBatch(*(fn(getattr(self, f.name)) for f in fields(self)))

    @property
    def target_tokens(self) -> int:  # the units of the loss: steps
        return int(self.loss_mask.sum())


def frame_batch(targets: list) -> FrameBatch:
    longest = max(len(t.target) for t in targets)
    width = targets[0].target.shape[1]
    inputs = np.zeros((len(targets), longest, width), dtype=np.float32)
    target = np.zeros((len(targets), longest, width), dtype=np.float32)
    lengths = np.array([t.length for t in targets], dtype=np.int64)
    for i, t in enumerate(targets):
        n = len(t.target)
        inputs[i, :n], target[i, :n] = t.inputs, t.target
    mask = np.arange(longest)[None] < lengths[:, None]
    return FrameBatch(inputs, target, mask, lengths)


@dataclass
class MotionBatch:
    """The motion head's targets of a batch: B rows of T frames (padded), F features a frame,
    noised for the diffusion loss (each row at its own level, from its target's seed)."""

    inputs: object  # [B, T, F] float32: x_t, with known frames clean
    target: object  # [B, T, F] float32: x0
    level: object  # [B] int64: the noise level of each row
    loss_mask: object  # [B, T] bool
    known: object  # [B, T] bool: frames given (in-betweening)
    drop: object  # [B] bool: rows trained without their prompt (classifier-free guidance)
    lengths: object  # [B] int64

    def map(self, fn) -> "MotionBatch":
        return MotionBatch(*(fn(getattr(self, f.name)) for f in fields(self)))

    @property
    def target_tokens(self) -> int:  # the units of the loss: frames
        return int(self.loss_mask.sum())


def motion_batch(targets: list) -> MotionBatch:
    from ..generate.diffusion import LEVELS, noised

    B, T, F = len(targets), max(len(t.target) for t in targets), targets[0].target.shape[1]
    inputs, target = np.zeros((B, T, F), np.float32), np.zeros((B, T, F), np.float32)
    level, known = np.zeros(B, np.int64), np.zeros((B, T), bool)
    drop = np.zeros(B, bool)
    lengths = np.array([t.length for t in targets], dtype=np.int64)
    for i, t in enumerate(targets):
        rng = np.random.default_rng(t.seed)
        n = len(t.target)
        level[i] = rng.integers(LEVELS)
        x_t = noised(t.target, int(level[i]), rng.standard_normal(t.target.shape).astype(np.float32))
        x_t[t.known] = t.target[t.known]
        inputs[i, :n], target[i, :n], known[i, :n] = x_t, t.target, t.known
        drop[i] = rng.random() < t.drop_prompt
    mask = np.arange(T)[None] < lengths[:, None]
    return MotionBatch(inputs, target, level, mask, known, drop, lengths)


BATCHERS = {"tokens": token_batch, "codes": token_batch,  # codes: targets are indices in the code range
            "frames": frame_batch, "motion": motion_batch}
BATCH_TYPES = (TokenBatch, FrameBatch, MotionBatch)


def batch_targets(samples: list) -> tuple[str, object]:
    """(head, its batched targets) of samples that share one output head."""
    heads = {s.head for s in samples}
    if len(heads) > 1:
        raise ValueError(f"a batch mixes output heads {sorted(heads)}: batch each task's rows on their own")
    (head,) = heads
    return head, BATCHERS[head]([s.target for s in samples])
