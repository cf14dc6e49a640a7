"""The token head (`target.tokens`): the decoder reads and writes tokens of the run's shared
vocabulary (text, box bins, class labels).  Its input embedding is the shared token embedding
(scaled, plus learned positions), its output projection the same matrix transposed (tied), its
loss label-smoothed cross-entropy, constrained to a closed set's answers where the task says so
(OFASys: `closed_set` constrains training as well as decoding).

Shapes: B rows, L positions, D = d_model, V vocabulary."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..layout import linear
from . import HEADS, LOSSES, LossTerms


@HEADS.register("tokens")
class TokenHead(nn.Module):
    def __init__(self, cfg: ModelConfig, embed: nn.Embedding):
        super().__init__()
        self.embed = embed  # shared with the text adaptor; its weight is the output projection
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.scale = math.sqrt(cfg.d_model)

    def inputs(self, tokens, start=0):
        """tokens [B, T] at positions start..start+T-1 (or one position per row, [B]) -> [B, T, D]
        (or [B, D]).  `start` may be a tensor (an exported graph's input)."""
        T = 1 if tokens.dim() == 1 else tokens.shape[1]
        if isinstance(start, int) and start + T > self.pos.num_embeddings:
            raise ValueError(f"a decoder sequence of {start + T} exceeds max_positions={self.pos.num_embeddings}")
        positions = start + torch.arange(T, device=tokens.device)
        return self.embed(tokens) * self.scale + self.pos(positions)

    def outputs(self, x, pack: dict | None = None):
        """Decoder states [..., D] -> logits [..., V]; with a generation pack, its layout."""
        return linear(None, x, pack, key="proj") if pack is not None else F.linear(x, self.embed.weight)

    logits = outputs  # what generation reads: logits over the vocabulary

    @staticmethod
    def teacher_forced(logits, targets, trie=None) -> dict:
        """The validation numbers of teacher-forced logits [B, L, V]: summed NLL, correct
        argmax tokens and the tokens that carry loss; with a closed set's `trie` (a constrained
        loss), over the answers' tokens, as training sees them."""
        mask = targets.loss_mask
        allowed = allowed_tokens(trie, targets, logits.shape[-1]) if trie is not None else None
        if allowed is not None:
            logits = logits.float().masked_fill(~allowed, float("-inf"))
        _, nll = token_losses(logits, targets.target, mask)
        return {"nll": float(nll.sum()), "correct": float((logits.argmax(-1) == targets.target)[mask].sum()),
                "units": float(mask.sum())}


def token_losses(logits, target, mask, eps: float = 0.0, allowed=None):
    """At the positions that carry loss: the label-smoothed loss and the NLL, flat vectors [N].
    logits [B, L, V]; target [B, L]; mask [B, L] bool; `allowed` [B, L, V] bool or None: the
    softmax and the smoothing only over the allowed tokens where given."""
    logits = logits.float()
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    lprobs = F.log_softmax(logits, dim=-1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[mask]
    if allowed is None:
        smooth = -lprobs.mean(-1)[mask]
    else:
        smooth = -(lprobs.masked_fill(~allowed, 0.0).sum(-1) / allowed.sum(-1).clamp(min=1))[mask]
    return (1 - eps) * nll + eps * smooth, nll


def allowed_tokens(trie, targets, vocab_size: int):
    """[B, L, V] bool: the tokens a closed set's trie allows at each target position after the
    forced prefix (every token elsewhere).  A target that leaves the trie (an answer missing from
    the task's `answers`) is unconstrained from there on."""
    tokens = targets.target.tolist()
    prefix = targets.prefix.tolist()
    mask = targets.loss_mask.tolist()
    allowed = torch.ones(len(tokens), len(tokens[0]), vocab_size, dtype=torch.bool)
    for b, row in enumerate(tokens):
        for t in range(prefix[b], len(row)):
            if not mask[b][t]:
                break
            options = trie.allowed(row[prefix[b]:t])
            if row[t] not in options:
                break
            allowed[b, t] = False
            allowed[b, t, options] = True
    return allowed.to(targets.target.device)


@LOSSES.register("label_smoothed_ce", attrs=("eps", "constrained"), required=("weight",))
def label_smoothed_ce(logits, targets, attrs: dict, trie=None) -> LossTerms:
    """Label-smoothed cross-entropy over the positions with loss; with `constrained` (a closed
    set) and the task's answers as `trie`, over the answers' tokens only."""
    allowed = allowed_tokens(trie, targets, logits.shape[-1]) if attrs.get("constrained") and trie else None
    loss, nll = token_losses(logits, targets.target, targets.loss_mask, attrs.get("eps", 0.0), allowed)
    return LossTerms(loss.sum(), nll.detach().sum())


@LOSSES.register("speech_to_text", attrs=("eps", "constrained", "ce_weight", "ctc_weight"), required=("weight",))
def speech_to_text(outputs, targets, attrs: dict, trie=None) -> LossTerms:
    """OFASys' ASR loss (`speech_to_text_loss`, a text_phone target): `ce_weight` x the decoder's
    label-smoothed cross-entropy + `ctc_weight` x the encoder's CTC over the target's phonemes
    (both summed over the micro-batch, as the other losses; rows whose audio is too short for
    their phonemes add no CTC: zero_infinity).  The reported NLL is the decoder's.  Outside
    training the model returns the logits alone: validation scores the decoder."""
    logits, ctc = outputs if isinstance(outputs, tuple) else (outputs, None)
    terms = label_smoothed_ce(logits, targets, attrs, trie)
    total = attrs.get("ce_weight", 1.0) * terms.total
    if ctc is not None and attrs.get("ctc_weight"):
        log_probs, lengths = ctc
        phones = F.ctc_loss(log_probs, targets.phones, lengths, targets.phone_lengths, blank=0,
                            reduction="sum", zero_infinity=True)
        total = total + attrs["ctc_weight"] * phones
    return LossTerms(total, terms.nll)
