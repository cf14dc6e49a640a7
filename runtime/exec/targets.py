"""How each output head's target is built from the decoder side of a row (`target.<head>` ops):
the data half of an output head.  The model half is `model.heads`."""
from __future__ import annotations

import numpy as np

from ..registry import Registry, attributes
from ..vocab.tokenizer import BOS, EOS
from .sample import FrameTarget, MotionTarget, TokenTarget

TARGETS = Registry("target")


@TARGETS.register("tokens")
def tokens(row, group) -> TokenTarget:
    """The decoder's token group as teacher-forced input (BOS + pieces as fed) and target
    (pieces + EOS, clean: span masking never applies to targets), with the loss mask; the
    leading pieces without loss are the forced prefix at inference."""
    pieces = row.pieces(group)
    fed, clean, loss = [], [], []
    for t, flag in pieces:
        fed += t.fed if len(t.fed) == len(t.ids) else t.ids
        clean += t.ids
        loss += [flag] * len(t.ids)
    limit = row.plan.attrs[group.id].get("max_length")
    if limit:
        keep = max(0, limit - 2)
        fed, clean, loss = fed[:keep], clean[:keep], loss[:keep]
    prefix = 0
    while prefix < len(loss) and not loss[prefix]:
        prefix += 1
    any_loss = any(flag for _, flag in pieces)
    out = TokenTarget([BOS] + fed, clean + [EOS], loss + [any_loss], prefix)
    if row.plan.ctc is not None and row.ctx.split != "test":
        out.phones = [p for t, flag in pieces if flag for p in (t.meta or {}).get("phones", ())]
        out.ctc = row.plan.ctc
    return out


def ctc_of(program, vocab) -> tuple[int, int, int] | None:
    """A loss with CTC (`speech_to_text` with a CTC weight; the encoder segment it reads is its
    second argument): (that segment's index, the first phone token id, the phone tokens), or None."""
    loss = program.only("loss")
    if len(loss.args) < 2 or not attributes(loss).get("ctc_weight"):
        return None
    phone_ids = vocab.phone_ids
    if not phone_ids:  # a tokenizer without phones: the text_phone preprocessor says so at the row
        return None
    return program.only("encoder").args.index(loss.args[1]), min(phone_ids.values()), len(phone_ids)


@TARGETS.register("codes")
def codes(row, preprocessed) -> TokenTarget:
    """An image's code tokens, teacher-forced: fed BOS and the codes before each position,
    trained on each code as its index in the code range (the code head's outputs are over the
    codes alone).  No EOS: an image is exactly its grid of codes.  At `test` (no codes) one
    placeholder position without loss, as the token head's empty target."""
    ids = row.values[preprocessed.id].ids
    if not ids:
        return TokenTarget([BOS], [0], [False], 0)
    first = row.ctx.vocab.code_ids[0]
    return TokenTarget([BOS] + ids[:-1], [i - first for i in ids], [True] * len(ids), 0)


@TARGETS.register("frames")
def frames(row, preprocessed) -> FrameTarget:
    """A speech target's log-mel frames, normalized by the run's statistics and packed
    `n_frames_per_step` frames to a step (a last partial step is dropped, as OFASys); the
    decoder is fed a zero frame, then each step before the one it predicts.  At `test` (no
    audio) one zero step without loss."""
    attrs = row.plan.attrs[preprocessed.id]
    k = attrs.get("n_frames_per_step") or 1
    width = attrs["n_mels"] * k
    logmel = row.values[preprocessed.id]
    if not hasattr(logmel, "tensor"):  # nothing read: the frames are to be generated
        return FrameTarget(np.zeros((1, width), np.float32), np.zeros((1, width), np.float32), 0)
    stats = (row.ctx.resources or {}).get("audio")
    if stats is None:
        raise ValueError("speech targets need the run's speech statistics (stage 0 of `ofac run` counts them)")
    x = stats.normalize(np.asarray(logmel.tensor, dtype=np.float32))
    steps = len(x) // k
    if steps == 0:
        raise ValueError(f"speech of {len(x)} frames is shorter than one step of {k} (n_frames_per_step)")
    target = np.ascontiguousarray(x[:steps * k].reshape(steps, width), dtype=np.float32)
    inputs = np.concatenate([np.zeros((1, width), np.float32), target[:-1]])
    return FrameTarget(inputs, target, steps)


@TARGETS.register("motion", resource="motion")
def motion(row, preprocessed) -> MotionTarget:
    """A motion target's normalized features and known frames (`preprocess.motion_6d`), with the
    seed of its noise; at `test` (no clip) an empty target: generation chooses the length."""
    features = row.values[preprocessed.id]
    seed = int(row.ctx.rng.integers(2**31))
    drop = float(attributes(row.program.only("loss")).get("drop_prompt", 0.0)) if row.ctx.training else 0.0
    if not hasattr(features, "tensor"):
        width = row.ctx.resources["motion"].dim if (row.ctx.resources or {}).get("motion") else 1
        return MotionTarget(np.zeros((1, width), np.float32), np.zeros(1, bool), 0, seed, 0.0)
    x = np.asarray(features.tensor, dtype=np.float32)
    known = features.meta.get("known")
    known = np.zeros(len(x), bool) if known is None else np.asarray(known, bool)
    return MotionTarget(x, known, len(x), seed, drop)
