"""The frames head (`target.frames`): the decoder writes speech as normalized log-mel frames,
`n_frames_per_step` of them packed into each step (OFASys' `audio_tgt_fbank`, after Tacotron 2).

In: a prenet (two ReLU layers of 256 with dropout 0.5, kept on at inference as Tacotron 2 and
OFASys do, so the autoregressive loop does not drift) and a projection to d_model, plus learned
positions.  Out: a frame projection (the pre-net frames, fed back at generation), a stop logit
(the step is the utterance's last), and a convolutional postnet whose output, added to the
frames, is the result.  Loss (`loss.tacotron2`, OFASys' `ofa_tacotron2`): L1 + MSE on the frames
before and after the postnet, and the stop token's binary cross-entropy with a positive weight
(one positive step per utterance).

Shapes: B rows, T steps, D = d_model, F = n_mels * n_frames_per_step."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...generate.speech import PRENET, PRENET_DROPOUT
from ..config import ModelConfig
from . import HEADS, LOSSES, LossTerms

POSTNET, KERNEL = 256, 5


@dataclass
class FrameOutputs:
    pre: torch.Tensor  # [B, T, F] frames before the postnet
    post: torch.Tensor  # [B, T, F] after it: the output
    stop: torch.Tensor  # [B, T] stop logits
    attention: tuple | None = None  # in training: (cross-attention weights [B, T, S], memory mask [B, 1, 1, S])


class Postnet(nn.Module):
    """Five 1-D convolutions over the steps (tanh between, batch norm, dropout 0.5): a residual
    that sharpens the frames."""

    def __init__(self, width: int, channels: int = POSTNET, layers: int = 5):
        super().__init__()
        sizes = [width] + [channels] * (layers - 1) + [width]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, KERNEL, padding=KERNEL // 2) for a, b in zip(sizes, sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])

    def forward(self, frames):  # [B, T, F] -> [B, T, F]
        x = frames.transpose(1, 2)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x))
            if i < len(self.convs) - 1:
                x = torch.tanh(x)
            x = F.dropout(x, 0.5, self.training)
        return x.transpose(1, 2)


@HEADS.register("frames")
class FrameHead(nn.Module):
    attention_layers = 2  # the decoder layers whose cross-attention the guided-attention loss reads

    def __init__(self, cfg: ModelConfig, embed: nn.Embedding):
        super().__init__()
        self.width = cfg.frame_dim
        if not self.width:
            raise ValueError("a frames head needs the width of its steps (ModelConfig.frame_dim)")
        self.prenet = nn.ModuleList([nn.Linear(self.width, PRENET), nn.Linear(PRENET, PRENET)])
        self.proj = nn.Linear(PRENET, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        nn.init.normal_(self.pos.weight, std=cfg.d_model ** -0.5)
        self.frame = nn.Linear(cfg.d_model, self.width)
        self.stop = nn.Linear(cfg.d_model, 1)
        self.postnet = Postnet(self.width)

    def inputs(self, frames, start=0, keep=None):
        """frames [B, T, F] at steps start..start+T-1 (or one step per row, [B, F]) -> [B, T, D]
        (or [B, D]).  The prenet's dropout stays on at inference (Tacotron 2); `keep` [B, T, 2,
        PRENET] gives its masks (generation draws them, `generate.speech.prenet_masks`)."""
        T = 1 if frames.dim() == 2 else frames.shape[1]
        if isinstance(start, int) and start + T > self.pos.num_embeddings:
            raise ValueError(f"a speech target of {start + T} steps exceeds max_positions={self.pos.num_embeddings}")
        if keep is not None and frames.dim() == 2:
            keep = keep[:, 0]  # one step per row
        x = frames
        for i, layer in enumerate(self.prenet):
            x = F.relu(layer(x))
            x = F.dropout(x, PRENET_DROPOUT, training=True) if keep is None else x * keep[..., i, :].to(x.dtype)
        return self.proj(x) + self.pos(start + torch.arange(T, device=frames.device))

    def outputs(self, x, attention=None) -> FrameOutputs:
        """Decoder states [B, T, D] -> the frames before and after the postnet, and stop logits."""
        pre = self.frame(x)
        return FrameOutputs(pre, pre + self.postnet(pre), self.stop(x).squeeze(-1), attention)

    def logits(self, x, pack: dict | None = None):
        """What a generation step reads: [N, F + 1], the step's frames and its stop logit."""
        return torch.cat([self.frame(x), self.stop(x)], -1)

    def finish(self, pre):
        """Generated pre-net frames [B, T, F] -> the output frames (postnet residual added)."""
        return pre + self.postnet(pre)

    @staticmethod
    def teacher_forced(out: FrameOutputs, targets, trie=None) -> dict:
        """Validation numbers: the summed L1 distance of the output frames (per value, summed over
        steps) as `nll`, and the steps whose stop decision is right as `correct`."""
        mask = targets.loss_mask
        l1 = (out.post.float() - targets.target).abs().mean(-1)[mask]
        right = ((out.stop > 0) == stop_targets(targets).bool())[mask]
        return {"nll": float(l1.sum()), "correct": float(right.sum()), "units": float(mask.sum())}


def stop_targets(targets):
    """[B, T] float: 1 at each row's last step, 0 elsewhere."""
    stop = torch.zeros(targets.loss_mask.shape, device=targets.target.device)
    rows = torch.nonzero(targets.lengths > 0).squeeze(1)
    stop[rows, targets.lengths[rows] - 1] = 1.0
    return stop


def guided_attention(weights, memory_mask, lengths, sigma: float = 0.4):
    """Per step [B, T], the attention a step pays away from the diagonal (Tachibana et al. 2017):
    sum_s A[t, s] * (1 - exp(-(s/S - t/T)^2 / (2 sigma^2))) over each row's S source positions
    and T steps; speech advances through the text, so the alignment is near-diagonal."""
    sources = memory_mask.reshape(memory_mask.shape[0], -1).sum(-1).float()  # [B]
    T, S = weights.shape[1], weights.shape[2]
    t = torch.arange(T, device=weights.device)[None, :, None] / lengths.clamp(min=1).float()[:, None, None]
    s = torch.arange(S, device=weights.device)[None, None, :] / sources[:, None, None]
    penalty = 1.0 - torch.exp(-((s - t) ** 2) / (2 * sigma * sigma))
    return (weights.float() * penalty).sum(-1)


@LOSSES.register("tacotron2", attrs=("bce_pos_weight", "guided_attention"), required=("weight",))
def tacotron2(out: FrameOutputs, targets, attrs: dict, trie=None) -> LossTerms:
    """L1 + MSE (each a mean over a step's values) of the frames before and after the postnet,
    plus the stop BCE (`bce_pos_weight` on the last step), summed over the steps with loss; with
    `guided_attention` (a weight; OFASys' use_guided_attention_loss, sigma 0.4) and the last
    decoder layers' cross-attention in training, plus the off-diagonal attention per step."""
    mask, target = targets.loss_mask, targets.target
    pre, post = out.pre.float(), out.post.float()

    def distance(y):
        d = y - target
        return d.abs().mean(-1) + (d * d).mean(-1)

    weight = torch.tensor(float(attrs.get("bce_pos_weight", 1.0)), device=target.device)
    bce = F.binary_cross_entropy_with_logits(out.stop.float(), stop_targets(targets), pos_weight=weight,
                                             reduction="none")
    per_step = distance(pre) + distance(post) + bce
    if attrs.get("guided_attention") and out.attention is not None:
        per_step = per_step + attrs["guided_attention"] * guided_attention(*out.attention, targets.lengths)
    total = per_step[mask].sum()
    return LossTerms(total, (post - target).abs().mean(-1)[mask].detach().sum())
