"""Generation with the PyTorch model: the search of `search.py` run on torch tensors (any
device), under no_grad.  See `search.py` for the algorithm."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .search import NEG, GenerateConfig, Hypothesis, Trie, search

__all__ = ["GenerateConfig", "Hypothesis", "Trie", "TorchArrays", "evaluating", "generate", "greedy"]


@contextlib.contextmanager
def evaluating(model):
    """The model in eval mode (no dropout) for the duration, its own mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class TorchArrays:
    """The array operations the search needs, on torch tensors of one device."""

    def __init__(self, device, seed: int | None = None):
        self.device = torch.device(device)
        # draws come from numpy's generator, as in the numpy backend, so that one seed samples the
        # same tokens on both (given the same probabilities)
        self.rng = np.random.default_rng(seed)

    def long(self, x):
        if isinstance(x, torch.Tensor):
            return x.to(self.device).long()
        return torch.tensor(x, dtype=torch.long, device=self.device)

    def arange(self, n: int):
        return torch.arange(n, device=self.device)

    def zeros(self, shape, kind: str):
        dtype = {"float": torch.float32, "bool": torch.bool, "long": torch.long}[kind]
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def repeat(self, n: int, k: int):
        return torch.arange(n, device=self.device).repeat_interleave(k)

    def additive(self, mask, dtype):
        return torch.zeros(mask.shape, dtype=dtype, device=self.device).masked_fill_(~mask, NEG)

    def log_softmax(self, x):
        return torch.log_softmax(x.float(), dim=-1)

    def softmax(self, x):
        return torch.softmax(x, dim=-1)

    def copy(self, x):
        return x.clone()

    def cat(self, a, b):
        return torch.cat([a, b], 1)

    def isfinite(self, x):
        return torch.isfinite(x)

    def where(self, cond, a, b):
        return torch.where(cond, a, b)

    def any_rows(self, x):
        return x.any(dim=1)

    def row_max(self, x):
        return x.max(dim=1)

    def topk(self, x, k: int):
        return x.topk(k, dim=1)

    def sort_desc(self, x):
        return x.sort(dim=1, descending=True)

    def argsort(self, x):
        return torch.argsort(x, dim=1, stable=True)

    def gather(self, x, idx):
        return x.gather(1, idx)

    def scatter(self, x, idx, values):
        return x.scatter(1, idx, values)

    def cumsum(self, x):
        return x.cumsum(1)

    def nonzero(self, mask) -> list:
        found = mask.nonzero()
        return found.squeeze(1).tolist() if mask.dim() == 1 else found.tolist()

    def multinomial(self, probs):
        """One draw per row of `probs` (rows sum to 1, or are all 0: then token 0), by the
        inverse CDF of one uniform per row: `NumpyArrays.multinomial` on tensors."""
        u = torch.from_numpy(self.rng.random((probs.shape[0], 1))).to(self.device)
        cdf = probs.double().cumsum(1)
        return ((cdf < u * cdf[:, -1:]).sum(1)).clamp(max=probs.shape[1] - 1)


@torch.inference_mode()
def generate(model, batch, cfg: GenerateConfig = GenerateConfig()) -> list[list[Hypothesis]]:
    """Per example, its hypotheses best first (`cfg.beam` of them when that many end); for a
    speech generation (`SpeechConfig`), its one utterance."""
    from . import diffusion
    from .speech import SpeechConfig, speak

    device = batch.decoder.inputs.device
    with evaluating(model):
        if isinstance(cfg, SpeechConfig):
            return speak(TorchSpeaker(model, device), batch, cfg)
        if isinstance(cfg, diffusion.DiffusionConfig):
            return diffusion.generate(TorchDenoiser(model, device), batch, cfg)
        return search(model, batch, cfg, TorchArrays(device, cfg.seed if cfg.sampling else None))


def greedy(model, batch, max_len: int = 64, min_len: int = 1, trie: Trie | None = None) -> list[list[int]]:
    """The single best continuation per example (beam search with one beam)."""
    cfg = GenerateConfig(beam=1, max_len=max_len, min_len=min_len, trie=trie)
    return [hyps[0].tokens if hyps else [] for hyps in generate(model, batch, cfg)]


class TorchSpeaker:
    """The eager model behind the numpy interface of the speech loop (`speech.speak`): encoder
    output and caches stay tensors on the device; steps cross as numpy arrays."""

    def __init__(self, model, device):
        self.model, self.device = model, device
        head = model.heads["frames"]
        self.frame_width, self.frame_positions = head.width, head.pos.num_embeddings

    def encode(self, batch):
        return self.model.encode(batch)

    def cross_cache(self, memory):
        return self.model.cross_cache(memory)

    def decode_step(self, step, t, past, cross, mask, last=True, head="frames", keep=None):
        tensor = lambda x: torch.from_numpy(x).to(self.device)  # noqa: E731
        out, present = self.model.decode_step(tensor(step), t, past, cross, mask, last=last, head=head,
                                              keep=tensor(keep))
        return out.float().cpu().numpy(), present

    def finish(self, pre):
        return self.model.heads["frames"].finish(torch.from_numpy(pre).to(self.device)).float().cpu().numpy()


class TorchDenoiser:
    """The eager model behind the numpy interface of the diffusion sampler (`diffusion.generate`):
    the encoder output stays on the device; frames cross as numpy arrays."""

    def __init__(self, model, device):
        self.model, self.device = model, device
        self.width = model.heads["motion"].width

    def encode(self, batch):
        return self.model.encode(batch)

    def denoise(self, state, x, levels, conditioned, lengths, known):
        memory, mask = state if conditioned else self.model.unprompted(*state)
        tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        out = self.model.denoise(memory, mask, tensor(x), tensor(levels), tensor(known), tensor(lengths))
        return out.float().cpu().numpy()
