"""Output heads: the model half of a `target.<head>` op, registered by name like the encoder
adaptors, with the losses (`loss.<name>`) that train them.  A head says what the decoder reads
at each position (`inputs`), what it writes there (`outputs`), and how the teacher-forced
outputs score against its batched targets (`teacher_forced`), and what generation reads
(`logits`: over the vocabulary, one position per row); its data half is
`exec.targets` (one row's target) and `data.targets` (a batch of them).

Adding an output kind (image codes, mel frames, motion) is one head module here, its loss
beside it, its target builder and batcher, a generator and a postprocessor."""
from __future__ import annotations

from dataclasses import dataclass

from ...registry import Registry

HEADS = Registry("target")
LOSSES = Registry("loss")


@dataclass
class LossTerms:
    """A micro-batch's loss, summed over the units that carry loss (tokens, frames): `total`
    is what is minimized (before the task's weight), `nll` what is reported per unit."""

    total: object  # scalar tensor
    nll: object  # scalar tensor


from . import codes, frames, motion, tokens  # noqa: E402,F401  (register the heads and their losses)
