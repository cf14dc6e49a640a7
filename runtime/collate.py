"""Collation: any mix of samples (several tasks and instructions in one batch) -> padded
tensors.  Inputs of one adaptor are stacked across the whole batch, so the model embeds each
modality in one call; `layout` says, per example, which rows form its encoder sequence."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .execute import Sample
from .tokenizer import PAD


@dataclass
class Batch:
    tasks: list[str]
    inputs: dict[str, torch.Tensor]  # adaptor -> [N, ...] padded along dim 1 where lengths differ
    lengths: dict[str, torch.Tensor]  # adaptor -> [N] valid lengths (variable-length inputs)
    layout: list[list[tuple[str, int]]]  # per example: (adaptor, row in inputs[adaptor]) in order
    decoder_input: torch.Tensor  # [B, L] BOS-first, PAD-padded
    target: torch.Tensor  # [B, L] PAD where there is no target token
    loss_mask: torch.Tensor  # [B, L] bool: positions that carry loss
    prefix: torch.Tensor  # [B] forced prefix lengths
    meta: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def target_tokens(self) -> int:
        return int(self.loss_mask.sum())

    def to(self, device, non_blocking: bool = True) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(self.tasks, {k: move(v) for k, v in self.inputs.items()},
                     {k: move(v) for k, v in self.lengths.items()}, self.layout, move(self.decoder_input),
                     move(self.target), move(self.loss_mask), move(self.prefix), self.meta)

    def pin_memory(self) -> "Batch":
        pin = lambda t: t.pin_memory()  # noqa: E731
        return Batch(self.tasks, {k: pin(v) for k, v in self.inputs.items()},
                     {k: v for k, v in self.lengths.items()}, self.layout, pin(self.decoder_input),
                     pin(self.target), pin(self.loss_mask), self.prefix, self.meta)


def pad_stack(tensors: list[torch.Tensor], value=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack along a new dim 0, right-padding dim 0 of each item to the longest."""
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    longest = int(lengths.max()) if len(tensors) else 0
    out = tensors[0].new_full((len(tensors), longest, *tensors[0].shape[1:]), value)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out, lengths


def collate(samples: list[Sample]) -> Batch:
    groups: dict[str, list[torch.Tensor]] = {}
    layout = []
    for s in samples:
        row = []
        for adaptor, data in s.encoder:
            bucket = groups.setdefault(adaptor, [])
            row.append((adaptor, len(bucket)))
            bucket.append(data)
        layout.append(row)
    inputs, lengths = {}, {}
    for adaptor, items in groups.items():
        shapes = {tuple(t.shape[1:]) for t in items}
        if len(shapes) > 1:
            raise ValueError(f"inputs of adaptor {adaptor} have different shapes {sorted(shapes)}: "
                             "tasks sharing an adaptor must share its preprocessing size")
        if items[0].dtype == torch.long:
            inputs[adaptor], lengths[adaptor] = pad_stack(items, PAD)
        elif len({t.shape[0] for t in items}) > 1 or items[0].dim() == 2:  # audio frames [T, D]
            inputs[adaptor], lengths[adaptor] = pad_stack(items, 0.0)
        else:
            inputs[adaptor] = torch.stack(items)
    dec, n = pad_stack([torch.tensor(s.decoder_input, dtype=torch.long) for s in samples], PAD)
    tgt, _ = pad_stack([torch.tensor(s.target, dtype=torch.long) for s in samples], PAD)
    mask, _ = pad_stack([torch.tensor(s.loss_mask, dtype=torch.bool) for s in samples], False)
    return Batch([s.task for s in samples], inputs, lengths, layout, dec, tgt, mask,
                 torch.tensor([s.prefix for s in samples], dtype=torch.long), [s.meta for s in samples])
