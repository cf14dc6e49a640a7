"""What the IR executor makes of one row: its encoder inputs and its decoder target."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EncoderInput:
    """One encoder segment: its adaptor and data (token ids as an int64 array; uint8 pixels or
    fbank frames as the preprocessor made them: torch tensors, or numpy arrays in the torch-free
    runtime)."""

    adaptor: str
    data: object
    norm: tuple | None = None  # (mean, std) for pixels, applied on the device
    mask_border: int = 0


@dataclass
class TokenTarget:
    """What the token head (`target.tokens`) is trained on for one example."""

    inputs: list[int]  # BOS + content, as fed (noised where noise applies)
    target: list[int]  # content + EOS (clean)
    loss_mask: list[bool]  # per target position
    prefix: int  # leading target tokens that are forced, not predicted, at inference
    # a text_phone target's CTC over the encoder (None: no CTC): the phonemes (offsets into the
    # phone tokens, the blank 0), and (encoder segment read, first phone token id, phone tokens)
    phones: list[int] | None = None
    ctc: tuple[int, int, int] | None = None


@dataclass
class FrameTarget:
    """What the frames head (`target.frames`) is trained on for one example: normalized log-mel
    frames packed `n_frames_per_step` to a decoder step, F = n_mels * n_frames_per_step."""

    inputs: object  # [T, F] float32: a zero frame, then the target's steps but the last (teacher forcing)
    target: object  # [T, F] float32
    length: int  # T steps carry loss (0: nothing to train on, at `test`)


@dataclass
class MotionTarget:
    """What the motion head (`target.motion`) is trained on for one example: normalized motion
    features [T, F], which frames are given (in-betweening), and the seed the batch draws this
    example's noise level, noise and prompt drop from (a pure function of the row's RNG, so a
    resumed run noises alike)."""

    target: object  # [T, F] float32
    known: object  # [T] bool
    length: int  # T frames carry loss (0: nothing to train on, at `test`)
    seed: int
    drop_prompt: float  # the chance this example is trained without its prompt (classifier-free guidance)


@dataclass
class Sample:
    task: str
    encoder: list[EncoderInput]  # in encoder order
    head: str  # the output head that takes `target`
    target: object  # that head's target for this example (TokenTarget for `tokens`)
    meta: dict = field(default_factory=dict)


def by_adaptor(samples: list[Sample]) -> tuple[dict[str, list[EncoderInput]], list[list[tuple[str, int]]]]:
    """The encoder inputs of a batch grouped by adaptor (each group is stacked into one input),
    and per example its layout: (adaptor, index in that group) in encoder order."""
    groups: dict[str, list[EncoderInput]] = {}
    layout = []
    for s in samples:
        row = []
        for seg in s.encoder:
            bucket = groups.setdefault(seg.adaptor, [])
            row.append((seg.adaptor, len(bucket)))
            bucket.append(seg)
        layout.append(row)
    return groups, layout
