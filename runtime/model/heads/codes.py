"""The code head (`target.codes`): the decoder writes an image as the grid x grid codes of the
run's image tokenizer, which are tokens of the shared vocabulary (OFASys' `image_vqgan`
adaptor: code embeddings from the shared matrix, 2-D code positions, the tied output
projection, logits restricted to the code range).

Position p of the decoder (0 is BOS) predicts code p, at row p // grid and column p % grid of the
image: its input is the embedding of the code before it plus learned row and column embeddings
of the cell it writes.  Teacher forcing scores the codes alone ([..., K] logits; the targets are
indices in the code range, `exec.targets.codes`), so the label-smoothed loss spreads its
smoothing over codes only; generation gets logits over the whole vocabulary with everything but
the codes at -inf, which the shared search takes as it takes the token head's.

Shapes: B rows, L positions, D = d_model, V vocabulary, K codes, g = grid."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from . import HEADS


@HEADS.register("codes")
class CodeHead(nn.Module):
    def __init__(self, cfg: ModelConfig, embed: nn.Embedding):
        super().__init__()
        (self.first, self.count), self.grid = cfg.code_ids, cfg.code_grid
        if not self.count or not self.grid:
            raise ValueError("a code head needs the run's image codes (ModelConfig.code_ids and code_grid)")
        self.embed = embed  # shared with the text adaptor and the token head
        self.row = nn.Embedding(self.grid + 1, cfg.d_model)  # row `grid`: the position after the image
        self.col = nn.Embedding(self.grid, cfg.d_model)
        for table in (self.row, self.col):
            nn.init.normal_(table.weight, std=cfg.d_model ** -0.5)
        self.scale = math.sqrt(cfg.d_model)

    def inputs(self, tokens, start=0):
        """tokens [B, T] at positions start..start+T-1 (or one position per row, [B]) -> [B, T, D]
        (or [B, D]).  `start` may be a tensor (an exported graph's input)."""
        T = 1 if tokens.dim() == 1 else tokens.shape[1]
        positions = start + torch.arange(T, device=tokens.device)
        rows = torch.clamp(torch.div(positions, self.grid, rounding_mode="floor"), max=self.grid)
        return self.embed(tokens) * self.scale + self.row(rows) + self.col(positions % self.grid)

    def outputs(self, x):
        """Decoder states [..., D] -> logits over the codes [..., K] (teacher forcing)."""
        return F.linear(x, self.embed.weight[self.first:self.first + self.count])

    def logits(self, x, pack: dict | None = None):
        """Decoder states [N, D] -> logits over the vocabulary [N, V], -inf outside the codes."""
        codes = self.outputs(x)
        V = self.embed.num_embeddings
        lead = codes.shape[:-1]
        below = torch.full((*lead, self.first), float("-inf"), dtype=codes.dtype, device=codes.device)
        above = torch.full((*lead, V - self.first - self.count), float("-inf"), dtype=codes.dtype,
                           device=codes.device)
        return torch.cat([below, codes, above], -1)

    @staticmethod
    def teacher_forced(logits, targets, trie=None) -> dict:
        """NLL and correct argmax codes of teacher-forced code logits [B, L, K]."""
        from .tokens import token_losses

        mask = targets.loss_mask
        _, nll = token_losses(logits, targets.target, mask)
        return {"nll": float(nll.sum()), "correct": float((logits.argmax(-1) == targets.target)[mask].sum()),
                "units": float(mask.sum())}
