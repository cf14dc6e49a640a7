"""IMAGE, VIDEO and AUDIO preprocessing without torch: the steps of `preprocess/image.py`,
`video.py` and `audio.py` with Pillow and numpy, for the torch-free ONNX runtime.

- IMAGE: decode (the shared `load_image`), resize with Pillow's filter of the same name
  (bicubic / bilinear / nearest, antialiased as torchvision's `antialias=True`) after the
  evaluation crop of the preprocessor (`base.EVAL_REGION`).  torchvision's uint8 kernels and
  Pillow's round differently: a pixel may differ by one level out of 255 (measured: under 1%
  of pixels).
- VIDEO: the shared PyAV decode and frame sampling, each frame resized as an image (bilinear,
  torchvision's default for clips).
- AUDIO: the shared soundfile decode; resampling with the windowed-sinc kernel of
  `torchaudio.transforms.Resample` (Hann window, 6 zero crossings, roll-off 0.99) and the Kaldi
  log-mel filterbank of `torchaudio.compliance.kaldi.fbank` (25 ms Povey windows every 10 ms,
  DC removal, pre-emphasis 0.97, power spectrum, mel banks from 20 Hz to Nyquist), then the
  same utterance mean/variance normalization.  Normalized features match torchaudio's to
  ~1e-3 on average; near-silent bands (e.g. above an upsampled signal's Nyquist) differ most,
  as float32 FFTs of rounding noise do.

These run at inference only: train-time augmentation needs the torch data path."""
from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import NotSupportedYet
from .base import EVAL_REGION, IMAGE_ATTRS, VIDEO_ATTRS, Context, Features, Geometry, mask_border, preprocessors
from .media import embedded_features, load_audio, load_image, load_video

REGISTRY = preprocessors()

_FILTERS = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest": "NEAREST"}


def _resize(pil, size: int, interpolation: str):
    from PIL import Image

    return pil.resize((size, size), getattr(Image.Resampling, _FILTERS[interpolation]))


def _inference_only(ctx: Context, what: str) -> None:
    if ctx.training:
        raise NotSupportedYet(f"training-time {what} preprocessing without torch",
                              help="train with the PyTorch runtime (`ofac run`); this one serves exported models")


def _image(name: str):
    def run(value, attrs: dict, ctx: Context) -> Features:
        _inference_only(ctx, "IMAGE")
        pil = load_image(value, ctx.base_dir)
        w, h = pil.size
        size = attrs["size"]
        region = EVAL_REGION[name](w, h)
        if region != (0.0, 0.0, float(w), float(h)):
            pil = pil.crop(tuple(int(c) for c in region))
        pixels = np.asarray(_resize(pil, size, attrs.get("interpolation", "bicubic"))).transpose(2, 0, 1)
        return Features(np.ascontiguousarray(pixels), {"geometry": Geometry((w, h), region, size)},
                        norm=(tuple(attrs["mean"]), tuple(attrs["std"])), mask_border=mask_border(attrs))
    return run


for _name in EVAL_REGION:
    REGISTRY.add(_name, _image(_name), attrs=IMAGE_ATTRS, required=("size", "mean", "std"))


@REGISTRY.register("video", required=VIDEO_ATTRS)
def video(value, attrs: dict, ctx: Context) -> Features:
    from PIL import Image

    _inference_only(ctx, "VIDEO")
    frames = load_video(value, ctx.base_dir, attrs["num_frames"])  # [N,H,W,3] uint8
    size = attrs["size"]
    out = np.stack([np.asarray(_resize(Image.fromarray(f), size, "bilinear")) for f in frames]).transpose(0, 3, 1, 2)
    return Features(np.ascontiguousarray(out), {"frames": len(frames)},
                    norm=(tuple(attrs["mean"]), tuple(attrs["std"])))


# ------------------------------------------------------------------------------ audio

@functools.lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, zeros: int = 6, rolloff: float = 0.99):
    """[new, taps] float32 kernel of a windowed-sinc resampler from `orig` to `new` (both
    divided by their gcd), and its half width."""
    base = min(orig, new) * rolloff
    width = math.ceil(zeros * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx) * base
    t = np.clip(t, -zeros, zeros)
    window = np.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(t == 0, 1.0, np.sin(t) / t)
    return (sinc * window * (base / orig)).astype(np.float32), width


def resample(wav: np.ndarray, rate: int, target: int) -> np.ndarray:
    g = math.gcd(rate, target)
    orig, new = rate // g, target // g
    kernel, width = _sinc_kernel(orig, new)
    x = np.pad(wav.astype(np.float32), (width, width + orig))
    taps = kernel.shape[1]
    frames = (len(x) - taps) // orig + 1
    windows = np.lib.stride_tricks.as_strided(x, (frames, taps), (x.strides[0] * orig, x.strides[0]))
    out = (windows @ kernel.T).reshape(-1)  # frame f gives outputs f*new .. f*new+new-1
    return out[: math.ceil(new * len(wav) / orig)]


@functools.lru_cache(maxsize=8)
def _mel_banks(n_mels: int, fft: int, rate: int, low: float = 20.0) -> np.ndarray:
    """[fft/2 + 1, n_mels] triangular filters on the Kaldi mel scale (1127 ln(1 + f/700))."""
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    lo, hi = mel(low), mel(rate / 2)
    delta = (hi - lo) / (n_mels + 1)
    left = lo + np.arange(n_mels)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    bins = mel(rate / fft * np.arange(fft // 2))[None, :]
    up, down = (bins - left) / (center - left), (right - bins) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))  # [n_mels, fft/2]
    return np.pad(banks, ((0, 0), (0, 1))).T.astype(np.float32)  # the Nyquist bin gets no weight


def fbank(wav: np.ndarray, rate: int, target_rate: int, n_mels: int) -> np.ndarray:
    if rate != target_rate:
        wav = resample(wav, rate, target_rate)
    x = wav.astype(np.float32) * 32768.0
    size, shift = int(target_rate * 0.025), int(target_rate * 0.010)
    fft = 1 << (size - 1).bit_length()
    if len(x) < size:
        raise ValueError(f"audio of {len(x) / target_rate * 1000:.1f} ms is shorter than one 25 ms frame")
    n = 1 + (len(x) - size) // shift
    frames = np.lib.stride_tricks.as_strided(x, (n, size), (x.strides[0] * shift, x.strides[0])).astype(np.float32)
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    window = (0.5 - 0.5 * np.cos(2 * math.pi * np.arange(size) / (size - 1))) ** 0.85
    spectrum = np.abs(np.fft.rfft(frames * window.astype(np.float32), n=fft, axis=1)) ** 2
    energies = spectrum.astype(np.float32) @ _mel_banks(n_mels, fft, target_rate)
    feats = np.log(np.maximum(energies, np.finfo(np.float32).eps))
    mean, std = feats.mean(0, keepdims=True), feats.std(0, ddof=1, keepdims=True)
    return ((feats - mean) / (std + 1e-5)).astype(np.float32)


@REGISTRY.register("audio", attrs=("sample_rate", "n_mels", "max_seconds", "n_frames_per_step", "use_mask", "n_fft",
                                   "hop_length", "f_min", "f_max"), required=("sample_rate", "n_mels"))
def audio(value, attrs: dict, ctx: Context) -> Features:
    _inference_only(ctx, "AUDIO")
    if attrs.get("n_fft"):  # a speech target: generated, never read at inference
        raise ValueError("the torch-free runtime does not read speech targets (they are what it generates)")
    wav, rate = load_audio(value, ctx.base_dir)
    max_seconds = attrs.get("max_seconds")
    if max_seconds and len(wav) > max_seconds * rate:
        raise ValueError(f"audio of {len(wav) / rate:.1f} s is longer than max_seconds={max_seconds}")
    feats = fbank(wav, rate, attrs["sample_rate"], attrs["n_mels"])
    k = attrs.get("n_frames_per_step") or 1
    if k > 1:
        frames = feats.shape[0] // k * k
        feats = feats[:frames].reshape(frames // k, -1)
    return Features(feats, {"seconds": len(wav) / rate})


def audio_embed(value, attrs: dict, ctx: Context) -> Features:
    return Features(embedded_features(value, attrs["dim"]))



REGISTRY.add("video_augment", REGISTRY.entries["video"].run, required=VIDEO_ATTRS)  # mirroring is training-only


REGISTRY.add("audio_embed", audio_embed, required=("dim",),
             unsupported="pre-extracted features (preprocess=audio_embed) are 439 wide and the audio adaptor reads "
                         "80-bin frames: their input projection is not built yet; give the audio itself")
