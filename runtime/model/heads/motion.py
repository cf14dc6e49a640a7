"""The motion head (`target.motion`): the decoder as a denoiser of motion features, OFASys'
motion_6d adaptor and diffusion criterion (after MDM).

In: noisy frames x_t [B, T, F] -> an MLP to d_model (Linear, GELU, Linear), FiLM from the noise
level ((1 + scale) h + shift, both from a zero-initialized embedding of the level, so training
starts level-blind and learns how much to trust the input), a learned vector on frames that are
given (in-betweening), learned positions.  The decoder reads all frames at once (no causal mask;
padding masked).  Out: an MLP back to F, the prediction of the clean frames x0.

Loss (`loss.diffusion`): per frame, the mean over features of |w (x0_hat - x0)| with OFASys'
w = sqrt(SNR + 1) (`weighting = "snr"`) or w = 1 (`"none"`), summed over frames.

Shapes: B rows, T frames, D = d_model, F = 6 + 6 x joints."""
from __future__ import annotations

import torch
from torch import nn

from ...generate.diffusion import LEVELS, snr_weight
from ..config import ModelConfig
from . import HEADS, LOSSES, LossTerms


@HEADS.register("motion")
class MotionHead(nn.Module):
    causal = False  # every frame denoised from all the others
    reads_batch = True  # inputs() takes the whole MotionBatch (levels, known frames, lengths)

    def __init__(self, cfg: ModelConfig, embed: nn.Embedding):
        super().__init__()
        self.width, d = cfg.motion_dim, cfg.d_model
        if not self.width:
            raise ValueError("a motion head needs the width of its frames (ModelConfig.motion_dim)")
        self.inp = nn.Sequential(nn.Linear(self.width, d), nn.GELU(), nn.Linear(d, d))
        self.film = nn.Embedding(LEVELS, 2 * d)
        nn.init.zeros_(self.film.weight)
        self.given = nn.Parameter(torch.zeros(d))
        self.pos = nn.Embedding(cfg.max_positions, d)
        nn.init.normal_(self.pos.weight, std=d ** -0.5)
        self.out = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, self.width))

    def embed(self, x, level, known, lengths):
        """x_t [B, T, F], levels [B], known [B, T] bool, lengths [B] -> ([B, T, D], self-attention
        mask [B, 1, 1, T] or None when nothing is padded)."""
        T = x.shape[1]
        if T > self.pos.num_embeddings:
            raise ValueError(f"a motion of {T} frames exceeds max_positions={self.pos.num_embeddings}")
        scale, shift = self.film(level).unsqueeze(1).chunk(2, -1)  # [B, 1, D] each
        h = self.inp(x) * (1 + scale) + shift + known.unsqueeze(-1).to(x.dtype) * self.given
        h = h + self.pos(torch.arange(T, device=x.device))
        valid = torch.arange(T, device=x.device)[None] < lengths[:, None]
        if torch.onnx.is_in_onnx_export():  # an exported graph serves padded batches: always masked
            return h, valid[:, None, None]
        return h, (None if bool(valid.all()) else valid[:, None, None])

    def inputs(self, batch):
        return self.embed(batch.inputs, batch.level, batch.known, batch.lengths)

    def outputs(self, x):
        """Decoder states [B, T, D] -> predicted clean frames [B, T, F]."""
        return self.out(x)

    @staticmethod
    def teacher_forced(out, targets, trie=None) -> dict:
        """Validation numbers: the summed mean-absolute error of the x0 prediction per frame (at
        each row's drawn noise level) as `nll`; `correct` counts frames predicted within 0.5
        standard deviations on average."""
        mask = targets.loss_mask
        err = (out.float() - targets.target).abs().mean(-1)[mask]
        return {"nll": float(err.sum()), "correct": float((err < 0.5).sum()), "units": float(mask.sum())}


@LOSSES.register("diffusion", attrs=("weighting", "drop_prompt"), required=("weight",))
def diffusion(out, targets, attrs: dict, trie=None) -> LossTerms:
    """L1 between the predicted and the clean frames, weighted per row by its noise level
    (OFASys: sqrt(SNR + 1)), summed over the frames with loss.  (`drop_prompt` is read by the
    data half: it decides which rows train without their prompt.)"""
    mask = targets.loss_mask
    per_frame = (out.float() - targets.target).abs().mean(-1)  # [B, T]
    if attrs.get("weighting", "snr") == "snr":
        w = torch.as_tensor(snr_weight(targets.level.cpu().numpy()), dtype=per_frame.dtype, device=per_frame.device)
        per_frame = per_frame * w[:, None]
    total = per_frame[mask].sum()
    plain = (out.detach().float() - targets.target).abs().mean(-1)[mask].sum()
    return LossTerms(total, plain)
