"""Speech generation (`generate.speech`): the frames head run autoregressively, OFASys'
AutoRegressiveSpeechGenerator.  Each row starts from a zero step and is fed back its own
pre-net frames over the key/value cache; a row stops at the first step whose stop probability
passes `eos_threshold` (that step is its last) or at `max_len` steps (bounded by the decoder's
positions); the postnet then runs over each row's steps.  Rows stop independently: the batch
runs until every row has stopped.

The result of a row is a `Frames` (normalized packed steps [T, F] and whether the stop token
fired), which `postprocess.waveform` unpacks, denormalizes and vocodes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .search import Hypothesis


@dataclass(frozen=True)
class SpeechConfig:
    max_len: int = 1500  # decoder steps
    eos_threshold: float = 0.5

    @classmethod
    def from_attrs(cls, attrs: dict, trie=None, **overrides) -> "SpeechConfig":
        """From a `generate.speech` op's attributes; `max_len` (and `eos_threshold`) may be
        overridden; the token search's settings (beam, sampling) do not apply."""
        if attrs.get("constraint", "none") != "none":
            from ..errors import NotSupportedYet

            raise NotSupportedYet("a closed set of speech outputs", help="leave `closed_set` off an AUDIO target")
        values = {k: attrs[k] for k in ("max_len", "eos_threshold") if k in attrs}
        values.update({k: v for k, v in overrides.items() if k in ("max_len", "eos_threshold") and v is not None})
        return cls(**values)

    def with_(self, **changes) -> "SpeechConfig":
        return self


@dataclass
class Frames:
    """One generated utterance: normalized steps [T, F] (float32, after the postnet) and whether
    its stop token fired (False: it ran to max_len)."""

    steps: np.ndarray
    stopped: bool


@torch.inference_mode()
def speak(model, batch, cfg: SpeechConfig) -> list[list[Hypothesis]]:
    """Per example, one hypothesis whose `tokens` are its Frames (score 0: no likelihood)."""
    was_training = model.training
    model.eval()
    try:
        return _speak(model, batch, cfg)
    finally:
        model.train(was_training)


def _speak(model, batch, cfg: SpeechConfig) -> list[list[Hypothesis]]:
    head = model.heads["frames"]
    memory, mask = model.encode(batch)
    cross = model.cross_cache(memory)
    B, width = memory.shape[0], head.width
    limit = max(1, min(cfg.max_len, head.pos.num_embeddings))
    step = torch.zeros(B, 1, width, device=memory.device)
    lengths = torch.full((B,), limit, dtype=torch.long, device=memory.device)
    done = torch.zeros(B, dtype=torch.bool, device=memory.device)
    frames, past = [], None
    for t in range(limit):
        out, past = model.decode_step(step, t, past, cross, mask, last=True, head="frames")  # [B, F + 1]
        frame, stop = out[:, :width].float(), torch.sigmoid(out[:, width].float())
        frames.append(frame)
        newly = ~done & (stop > cfg.eos_threshold)
        lengths[newly] = t + 1
        done |= newly
        if bool(done.all()):
            break
        step = frame[:, None].to(step.dtype)
    post = head.finish(torch.stack(frames, 1)).float().cpu().numpy()
    lengths, done = lengths.tolist(), done.tolist()
    return [[Hypothesis(Frames(post[b, :lengths[b]], done[b]), 0.0, 0.0)] for b in range(B)]
