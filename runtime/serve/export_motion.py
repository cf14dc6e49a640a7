"""The motion head's part of `ofac export`: one graph, `denoise_motion.onnx`, that predicts the
clean frames from noisy ones (one denoising call of `EncoderDecoder.denoise`), and beside it the
run's motion statistics and skeleton (`tokenizers/motion/config.json`) and the unprompted memory
(the `empty` vector classifier-free guidance samples against, in the manifest).  The sampler
itself is `generate/diffusion.py`, numpy, the same loop on both backends."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..codec.motion import FOLDER
from ..store.files import write_json


class _Denoiser(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x, level, known, lengths, memory, mask):
        return self.m.denoise(memory, mask, x, level, known, lengths)


def export_denoiser(system, model, tmp: Path, opset: int, export, log) -> dict:
    """-> the graph's manifest entry (with `empty`: the unprompted memory vector)."""
    from torch.export import Dim

    log("exporting denoise_motion")
    cfg = model.cfg
    batch, frames, source = Dim("batch"), Dim("frames"), Dim("source")
    args = [torch.randn(2, 12, cfg.motion_dim), torch.tensor([5, 700]), torch.zeros(2, 12, dtype=torch.bool),
            torch.tensor([12, 9]), torch.randn(2, 7, cfg.d_model), torch.ones(2, 1, 1, 7, dtype=torch.bool)]
    dyn = ({0: batch, 1: frames}, {0: batch}, {0: batch, 1: frames}, {0: batch}, {0: batch, 1: source},
           {0: batch, 3: source})
    entry = export(_Denoiser(model), args, dyn, ["x", "level", "known", "lengths", "memory", "mask"], ["x0"],
                   tmp / "denoise_motion.onnx", opset)
    entry["empty"] = model.empty.detach().float()[0].tolist()
    (tmp / FOLDER).mkdir(parents=True, exist_ok=True)
    write_json(tmp / FOLDER / "config.json", system.resources["motion"].config)
    return entry
