"""Speech generation (`generate.speech`): the frames head run autoregressively, OFASys'
AutoRegressiveSpeechGenerator.  Each row starts from a zero step and is fed back its own
pre-net frames over the key/value cache; a row stops at the first step whose stop probability
passes `eos_threshold` (that step is its last) or at `max_len` steps (bounded by the decoder's
positions); the postnet then runs over each row's steps.  Rows stop independently: the batch
runs until every row has stopped.

The result of a row is a `Frames` (normalized packed steps [T, F] and whether the stop token
fired), which `postprocess.waveform` unpacks, denormalizes and vocodes.  The loop runs on numpy
arrays against the eager model (`eager.TorchSpeaker`) or the exported graphs alike, and draws the
prenet's dropout itself (`prenet_masks`), so one seed gives one utterance on both.  No torch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .search import Hypothesis

PRENET, PRENET_DROPOUT = 256, 0.5  # the frames head's prenet: units a layer, dropout (kept on at inference)


@dataclass(frozen=True)
class SpeechConfig:
    max_len: int = 1500  # decoder steps
    eos_threshold: float = 0.5
    seed: int | None = 0  # of the prenet's dropout: one checkpoint says a phrase one way unless asked

    @classmethod
    def from_attrs(cls, attrs: dict, trie=None, **overrides) -> "SpeechConfig":
        """From a `generate.speech` op's attributes; `max_len` (and `eos_threshold`) may be
        overridden; the token search's settings (beam, sampling) do not apply."""
        if attrs.get("constraint", "none") != "none":
            from ..errors import NotSupportedYet

            raise NotSupportedYet("a closed set of speech outputs", help="leave `closed_set` off an AUDIO target")
        values = {k: attrs[k] for k in ("max_len", "eos_threshold") if k in attrs}
        values.update({k: v for k, v in overrides.items() if k in ("max_len", "eos_threshold", "seed")
                       and v is not None})
        return cls(**values)


@dataclass
class Frames:
    """One generated utterance: normalized steps [T, F] (float32, after the postnet) and whether
    its stop token fired (False: it ran to max_len)."""

    steps: np.ndarray
    stopped: bool


def prenet_masks(rng: np.random.Generator, rows: int) -> np.ndarray:
    """One step's prenet dropout [rows, 1, 2, PRENET]: 0 or 1 / (1 - p) per unit of each of the two
    layers.  Drawn here, from numpy's generator, so that one seed speaks alike on every backend."""
    return (rng.random((rows, 1, 2, PRENET)) >= PRENET_DROPOUT).astype(np.float32) / (1.0 - PRENET_DROPOUT)


def speak(model, batch, cfg: SpeechConfig) -> list[list[Hypothesis]]:
    """Per example, one hypothesis whose `tokens` are its Frames (score 0: no likelihood).
    `model` offers encode, cross_cache, decode_step(step, t, past, cross, mask, last, head, keep)
    and finish(pre) on numpy arrays, and `frame_width` / `frame_positions` (the eager model's
    adapter in eager.py, or the ONNX graphs)."""
    memory, mask = model.encode(batch)
    cross = model.cross_cache(memory)
    B, width = memory.shape[0], model.frame_width
    limit = max(1, min(cfg.max_len, model.frame_positions))
    rng = np.random.default_rng(cfg.seed)
    step = np.zeros((B, 1, width), dtype=np.float32)
    lengths = np.full(B, limit, dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    frames, past = [], None
    for t in range(limit):
        out, past = model.decode_step(step, t, past, cross, mask, last=True, head="frames",
                                      keep=prenet_masks(rng, B))  # [B, F + 1]
        out = np.asarray(out, dtype=np.float32)
        frame, stop = out[:, :width], 1.0 / (1.0 + np.exp(-np.clip(out[:, width], -60.0, 60.0)))
        frames.append(frame)
        newly = ~done & (stop > cfg.eos_threshold)
        lengths[newly] = t + 1
        done |= newly
        if done.all():
            break
        step = frame[:, None]
    post = np.asarray(model.finish(np.stack(frames, 1)), dtype=np.float32)
    return [[Hypothesis(Frames(post[b, :lengths[b]], bool(done[b])), 0.0, 0.0)] for b in range(B)]
