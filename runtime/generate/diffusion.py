"""Diffusion generation (`generate.diffusion`): OFASys' motion sampler, DDIM over x0 predictions.

The forward process is diffusers' `DDPMScheduler`/`DDIMScheduler` with `beta_schedule =
"squaredcos_cap_v2"` (Nichol & Dhariwal's cosine schedule, betas capped at 0.999) over
LEVELS = 1000 noise levels: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.  Training draws a
level and noise per example (`noised`, from the example's seed: `data.targets.motion_batch`).

Sampling (`sample`) starts from pure noise and takes `steps` DDIM steps (eta 0, "leading"
spacing, `set_alpha_to_one`: the last step lands on the model's x0).  At each step the model
predicts x0 (with `guidance` w, OFASys' classifier-free guidance: (1 + w) * cond - w * uncond,
the unconditional prediction made without the prompt); the prediction's 6-D rotations are made
proper rotations and the known frames put back (in-betweening); then x_{t'} = sqrt(abar_t')
x0 + sqrt(1 - abar_t') eps, with eps implied by x_t and x0.  Written here in numpy (the ~40
lines diffusers' scheduler would be) so one seed gives one motion on the eager and the exported
model; a test checks it against diffusers.  No torch."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .search import Hypothesis

LEVELS = 1000  # training noise levels (diffusers' num_train_timesteps)
DEFAULT_LENGTH = 60  # frames, when neither the request nor the run says


def betas(levels: int = LEVELS, cap: float = 0.999) -> np.ndarray:
    """squaredcos_cap_v2: beta_t = 1 - abar(t+1)/abar(t), abar(s) = cos^2((s/T + 0.008)/1.008 * pi/2)."""
    def abar(s):
        return math.cos((s / levels + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - abar(t + 1) / abar(t), cap) for t in range(levels)], dtype=np.float64)


ALPHAS_CUMPROD = np.cumprod(1.0 - betas())


def noised(x0: np.ndarray, level: int, noise: np.ndarray) -> np.ndarray:
    a = ALPHAS_CUMPROD[level]
    return (math.sqrt(a) * x0 + math.sqrt(1 - a) * noise).astype(np.float32)


def snr_weight(levels: np.ndarray) -> np.ndarray:
    """OFASys' x0 loss weight sqrt(SNR + 1) = 1 / sqrt(1 - abar_t)."""
    return 1.0 / np.sqrt(1.0 - ALPHAS_CUMPROD[levels])


def timesteps(steps: int, levels: int = LEVELS) -> np.ndarray:
    """DDIM's levels, "leading" spacing, steps_offset 0: (steps-1)*k, ..., k, 0 with k = levels // steps."""
    k = levels // steps
    return (np.arange(steps) * k)[::-1].astype(np.int64)


@dataclass(frozen=True)
class DiffusionConfig:
    steps: int = 50  # DDIM steps
    guidance: float = 1.0  # w: (1 + w) cond - w uncond (0: no guidance, one model call a step)
    length: int | None = None  # frames of a motion generated without a reference (None: the run's median clip)
    seed: int | None = 0
    # x0 [B, T, F] -> x0 with proper rotations: the run's motion codec's, set by the scorer
    rectify: object = field(default=None, compare=False)

    @classmethod
    def from_attrs(cls, attrs: dict, trie=None, **overrides) -> "DiffusionConfig":
        if attrs.get("constraint", "none") != "none":
            from ..errors import NotSupportedYet

            raise NotSupportedYet("a closed set of motion outputs", help="leave `closed_set` off a MOTION target")
        values = {k: attrs[k] for k in ("steps", "guidance", "length") if attrs.get(k) is not None}
        values.update({k: v for k, v in overrides.items() if k in ("steps", "guidance", "length", "seed")
                       and v is not None})
        if not 1 <= int(values.get("steps", cls.steps)) <= LEVELS:
            raise ValueError(f"diffusion steps must be 1..{LEVELS}, not {values['steps']}")
        return cls(**values)


@dataclass
class MotionFeatures:
    """One generated motion: normalized features [T, F] (float32) and the frames that were given."""

    features: np.ndarray
    known: np.ndarray | None = None


def sample(denoise, lengths: np.ndarray, width: int, cfg: DiffusionConfig, known=None, rectify=None):
    """DDIM from noise.  `denoise(x [B, T, F], levels [B], conditioned: bool) -> x0 [B, T, F]`
    (numpy); `lengths` [B] frames a row (padded to the longest); `known` (mask [B, T] bool,
    values [B, T, F]) frames kept as given; `rectify(x0) -> x0` makes a prediction a valid
    motion.  -> per row its features [T_b, F]."""
    B, T = len(lengths), int(max(lengths))
    rng = np.random.default_rng(cfg.seed)
    x = rng.standard_normal((B, T, width)).astype(np.float32)
    levels = timesteps(cfg.steps)
    for i, t in enumerate(levels):
        level = np.full(B, t, dtype=np.int64)
        if known is not None:
            x = np.where(known[0][..., None], known[1], x)  # given frames are fed clean, as in training
        x0 = np.asarray(denoise(x, level, True), dtype=np.float32)
        if cfg.guidance:
            x0 = (1 + cfg.guidance) * x0 - cfg.guidance * np.asarray(denoise(x, level, False), dtype=np.float32)
        if rectify is not None:
            x0 = rectify(x0)
        if known is not None:
            x0 = np.where(known[0][..., None], known[1], x0)
        a = ALPHAS_CUMPROD[t]
        eps = (x - math.sqrt(a) * x0) / math.sqrt(max(1 - a, 1e-12))
        a_prev = ALPHAS_CUMPROD[levels[i + 1]] if i + 1 < len(levels) else 1.0
        x = (math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps).astype(np.float32)
    return [x[b, :lengths[b]] for b in range(B)]


def generate(model, batch, cfg: DiffusionConfig) -> list[list[Hypothesis]]:
    """Per example one hypothesis whose `tokens` are its MotionFeatures (score 0).  `model`
    offers encode(batch) -> state, denoise(state, x, levels, conditioned), rectify(x0), `width`,
    `default_length` (the eager model's adapter, or the exported graphs'); the batch's motion
    targets give each row's length (a reference clip) and known frames, else cfg.length or the
    run's median clip length."""
    state = model.encode(batch)
    target = batch.decoder
    given = np.asarray(target.lengths)
    lengths = np.where(given > 0, given, cfg.length or DEFAULT_LENGTH).astype(np.int64)
    known_mask = np.asarray(target.known)
    T = int(lengths.max())
    mask = np.zeros((len(lengths), T), bool)
    values = np.zeros((len(lengths), T, model.width), np.float32)
    n = min(T, known_mask.shape[1])
    mask[:, :n], values[:, :n] = known_mask[:, :n], np.asarray(target.target)[:, :n]
    known = (mask, values) if mask.any() else None
    out = sample(lambda x, lv, c: model.denoise(state, x, lv, c, lengths, mask), lengths, model.width, cfg, known,
                 cfg.rectify)
    return [[Hypothesis(MotionFeatures(f, mask[b, :len(f)] if known is not None else None), 0.0, 0.0)]
            for b, f in enumerate(out)]
