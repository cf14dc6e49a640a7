"""Collation: any mix of samples (several tasks and instructions of one output head in one
batch) -> padded tensors.  Inputs of one adaptor are stacked across the whole batch, so the
model embeds each modality in one call; `layout` says, per example, which rows form its encoder
sequence.  Pixels stay uint8 until `Batch.to` normalizes them on the device (`normalize`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..exec.sample import Sample, by_adaptor
from ..vocab.tokenizer import PAD
from . import buffers
from .buffers import Recycler
from .targets import BATCH_TYPES, FrameBatch, MotionBatch, TokenBatch, batch_targets


@dataclass
class Batch:
    tasks: list[str]
    inputs: dict[str, torch.Tensor]  # adaptor -> [N, ...] padded along dim 1 where lengths differ
    lengths: dict[str, torch.Tensor]  # adaptor -> [N] valid lengths (variable-length inputs)
    layout: list[list[tuple[str, int]]]  # per example: (adaptor, row in inputs[adaptor]) in order
    head: str  # the output head the targets are for
    decoder: TokenBatch | FrameBatch | MotionBatch  # the head's targets (tensors)
    meta: list[dict] = field(default_factory=list)
    # adaptor -> (mean [N,3], std [N,3], mask border [N]) for uint8 pixel inputs; applied by
    # `to()` on the target device, after which `norms` is empty and pixels are float
    norms: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    def mask(self, adaptor: str) -> torch.Tensor:
        """[N, T] True at real (non-padding) positions of a variable-length input."""
        lengths = self.lengths[adaptor]
        steps = torch.arange(self.inputs[adaptor].shape[1], device=lengths.device)
        return steps.unsqueeze(0) < lengths.unsqueeze(1)

    def to(self, device, non_blocking: bool = True) -> "Batch":
        """Move to `device` and finish preprocessing there (normalize pixels)."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        inputs = {k: move(v) for k, v in self.inputs.items()}
        for adaptor, (mean, std, border) in self.norms.items():
            inputs[adaptor] = normalize(inputs[adaptor], move(mean), move(std), border)
        return replace(self, inputs=inputs, lengths={k: move(v) for k, v in self.lengths.items()},
                       decoder=self.decoder.map(move), norms={})

    def __reduce__(self):
        """Pickling (a DataLoader worker handing the batch over): tensors under 64 KiB travel
        inside the pickle as bytes; only the large ones (pixels, frames, fbanks) go through
        shared memory, in the worker's reused slots (`buffers`), named by reference once the
        slot's descriptor has crossed.  A fresh shared tensor costs the receiver a socket round
        trip to fetch its file descriptor plus an mmap, which for a batch's half-dozen small
        tensors cost more than copying them."""
        state = {f: _inline(getattr(self, f)) for f in self.__dataclass_fields__}
        return _rebuild_batch, (state,)

    def pin_memory(self) -> "Batch":
        pin = lambda t: t.pin_memory()  # noqa: E731
        return replace(self, inputs={k: pin(v) for k, v in self.inputs.items()}, decoder=self.decoder.map(pin))


_INLINE_BYTES = 1 << 16


class _Bytes:
    """A small tensor pickled by value (see Batch.__reduce__)."""

    def __init__(self, t: torch.Tensor):
        self.array = t.numpy()

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.array)


def _inline(value):
    if isinstance(value, BATCH_TYPES):
        return value.map(_inline)
    if isinstance(value, torch.Tensor):
        ref = buffers.slot_reference(value)
        if ref is not None:
            return ref
        small = value.device.type == "cpu" and value.numel() * value.element_size() < _INLINE_BYTES
        return _Bytes(value) if small and not value.requires_grad else value
    if isinstance(value, dict):
        return {k: _inline(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_inline(v) for v in value)
    return value


def _restore(value):
    if isinstance(value, BATCH_TYPES):
        return value.map(_restore)
    if isinstance(value, (_Bytes, buffers.SlotRef)):
        return value.tensor()
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_restore(v) for v in value)
    return value


def _rebuild_batch(state: dict) -> Batch:
    buffers.release_idle()  # slots of batches this process has finished with go back first
    return Batch(**{k: _restore(v) for k, v in state.items()})


def alloc(shape, dtype) -> torch.Tensor:
    """An uninitialized batch tensor.  In a DataLoader worker a large one lives in shared memory
    from the start (one of the worker's reused slots, see `buffers`), so handing the batch to
    the main process copies nothing; small ones travel inside the pickle anyway."""
    if torch.utils.data.get_worker_info() is None or math.prod(shape) * dtype.itemsize < _INLINE_BYTES:
        return torch.empty(shape, dtype=dtype)
    return buffers.worker_empty(shape, dtype)


def pad_stack(tensors: list[torch.Tensor], value=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack along a new dim 0, right-padding dim 0 of each item to the longest."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    longest = int(lengths.max()) if len(tensors) else 0
    out = alloc((len(tensors), longest, *tensors[0].shape[1:]), tensors[0].dtype).fill_(value)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out, lengths


def collate(samples: list[Sample]) -> Batch:
    segs, layout = by_adaptor(samples)
    groups = {adaptor: [torch.from_numpy(s.data) if isinstance(s.data, np.ndarray) else s.data for s in items]
              for adaptor, items in segs.items()}
    norms = {}
    for adaptor, items in segs.items():
        if items[0].norm is not None:
            norms[adaptor] = (torch.tensor([s.norm[0] for s in items], dtype=torch.float32),
                              torch.tensor([s.norm[1] for s in items], dtype=torch.float32),
                              torch.tensor([s.mask_border for s in items], dtype=torch.long))
    inputs, lengths = {}, {}
    for adaptor, items in groups.items():
        shapes = {tuple(t.shape[1:]) for t in items}
        if len(shapes) > 1:
            raise ValueError(f"inputs of adaptor {adaptor} have different shapes {sorted(shapes)}: "
                             "tasks sharing an adaptor must share its preprocessing size")
        if items[0].dtype == torch.long:
            inputs[adaptor], lengths[adaptor] = pad_stack(items, PAD)
        elif items[0].dtype.is_floating_point and items[0].dim() == 2:  # audio frames [T, D]
            inputs[adaptor], lengths[adaptor] = pad_stack(items, 0.0)
        else:
            inputs[adaptor] = torch.stack(items, out=alloc((len(items), *items[0].shape), items[0].dtype))
    head, targets = batch_targets(samples)
    return Batch([s.task for s in samples], inputs, lengths, layout, head, targets.map(torch.from_numpy),
                 [s.meta for s in samples], norms)


_outputs = Recycler()


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, border: torch.Tensor) -> torch.Tensor:
    """uint8 images [N,3,H,W] or clips [N,T,3,H,W] -> normalized float, per-row mean/std [N,3];
    rows with a mask border get their centre zeroed (image infilling input).

    (x/255 - mean)/std is one affine map per channel, x*a + b, applied row by row so each
    image is converted and scaled while it is in cache: normalization is memory-bound.  On the
    CPU the float output reuses an earlier batch's block once nothing refers to it (`Recycler`):
    a fresh 12 MB block costs a page fault per 4 KiB, as much as the normalization itself."""
    shape = (1,) * (x.dim() - 4) + (3, 1, 1)
    scale = (1.0 / (255.0 * std)).to(x.device)
    shift = (-mean / std).to(x.device)
    if x.device.type == "cpu":
        y = _outputs.empty(x.shape, torch.float32)
        for row in range(x.shape[0]):
            y[row].copy_(x[row]).mul_(scale[row].view(shape)).add_(shift[row].view(shape))
    else:  # on an accelerator one batched kernel is best (and its caching allocator reuses memory)
        y = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        y.copy_(x).mul_(scale.view((-1,) + shape)).add_(shift.view((-1,) + shape))
    for row in torch.nonzero(border).flatten().tolist():
        b = int(border[row])
        y[row, ..., b:y.shape[-2] - b, b:y.shape[-1] - b] = 0
    return y
