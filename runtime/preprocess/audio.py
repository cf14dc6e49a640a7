"""AUDIO: decode (soundfile), downmix, resample to the target rate (torchaudio), 80-bin
Kaldi log-mel fbank with utterance mean/variance normalization; at train time SpecAugment, and
with `use_mask` wav2vec 2.0-style time masking on top."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torchaudio

from .base import Context, Features, preprocessors
from .media import embedded_features, load_audio, media_cell
from .memo import MEDIA, file_key

REGISTRY = preprocessors()


@functools.lru_cache(maxsize=16)
def _resampler(rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    # the windowed-sinc kernel depends only on the two rates: build it once per pair
    return torchaudio.transforms.Resample(rate, target_rate)


def resample(wav: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    return _resampler(rate, target_rate)(torch.from_numpy(np.asarray(wav, np.float32))[None])[0].numpy()


def fbank(wav: np.ndarray, rate: int, target_rate: int, n_mels: int) -> torch.Tensor:
    x = torch.from_numpy(wav).unsqueeze(0)
    if rate != target_rate:
        x = _resampler(rate, target_rate)(x)
    feats = torchaudio.compliance.kaldi.fbank(x * 32768.0, num_mel_bins=n_mels, sample_frequency=target_rate,
                                              dither=0.0)
    mean, std = feats.mean(0, keepdim=True), feats.std(0, keepdim=True)
    return (feats - mean) / (std + 1e-5)


def spec_augment(feats: torch.Tensor, rng: np.random.Generator, freq_width: int = 27, time_ratio: float = 0.05,
                 masks: int = 2) -> torch.Tensor:
    feats = feats.clone()
    frames, dims = feats.shape
    for _ in range(masks):
        f = int(rng.integers(0, freq_width + 1))
        f0 = int(rng.integers(0, max(1, dims - f)))
        feats[:, f0:f0 + f] = 0
        t = int(rng.integers(0, max(1, int(frames * time_ratio)) + 1))
        t0 = int(rng.integers(0, max(1, frames - t)))
        feats[t0:t0 + t, :] = 0
    return feats


def time_mask(feats: torch.Tensor, rng: np.random.Generator, prob: float = 0.065, span: int = 10) -> torch.Tensor:
    """wav2vec 2.0's masking (`use_mask`): every frame starts a masked span of `span` frames with
    probability `prob`; masked frames are zeroed (the normalized features' mean)."""
    starts = np.flatnonzero(rng.random(feats.shape[0]) < prob)
    if len(starts) == 0:
        return feats
    masked = np.zeros(feats.shape[0], dtype=bool)
    for s in starts:
        masked[s:s + span] = True
    feats = feats.clone()
    feats[torch.from_numpy(masked)] = 0
    return feats


@functools.lru_cache(maxsize=4)
def _mel_scale(sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float, f_max: float):
    # librosa's (Slaney) mel filters on the STFT magnitude, as OFASys' extract_logmel_spectrogram
    return torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop_length,
                                                f_min=f_min, f_max=f_max, n_mels=n_mels, power=1.0, norm="slaney",
                                                mel_scale="slaney")


def log_mel(wav: np.ndarray, rate: int, attrs: dict) -> torch.Tensor:
    """A speech target's features: log(max(mel magnitude, 1e-5)) [T, n_mels] at the target's
    rate (no normalization here: the run's global statistics apply in the target, `exec.targets`)."""
    x = torch.from_numpy(wav if rate == attrs["sample_rate"] else resample(wav, rate, attrs["sample_rate"]))
    mel = _mel_scale(attrs["sample_rate"], attrs["n_fft"], attrs["hop_length"], attrs["n_mels"], attrs["f_min"],
                     attrs["f_max"])(x)
    return torch.log(torch.clamp(mel, min=1e-5)).T.contiguous()


_SPEECH = ("n_fft", "hop_length", "f_min", "f_max")


@REGISTRY.register("audio", attrs=("sample_rate", "n_mels", "max_seconds", "n_frames_per_step", "use_mask") + _SPEECH,
                   required=("sample_rate", "n_mels"), cell=media_cell("audio"))
def audio(value, attrs: dict, ctx: Context) -> Features:
    """The encoder's fbank frames; with `n_fft` (a speech target, the decoder side's parameters)
    the target's log-mel frames, unpacked (the frames head packs `n_frames_per_step` of them)."""
    max_seconds = attrs.get("max_seconds")
    if attrs.get("n_fft"):
        wav, rate = load_audio(value, ctx.base_dir)
        _check_length(wav, rate, max_seconds)
        if len(wav) < attrs["n_fft"]:
            raise ValueError(f"speech of {len(wav)} samples is shorter than one analysis window ({attrs['n_fft']})")
        return Features(log_mel(wav, rate, attrs), {"seconds": len(wav) / rate, "waveform": (wav, rate)})

    def encoder_features():
        wav, rate = load_audio(value, ctx.base_dir)
        _check_length(wav, rate, max_seconds)
        return fbank(wav, rate, attrs["sample_rate"], attrs["n_mels"]), len(wav) / rate

    key = file_key(value, ctx.base_dir, "fbank", attrs["sample_rate"], attrs["n_mels"], max_seconds)
    feats, seconds = MEDIA.get(key, encoder_features)
    if ctx.training:
        feats = spec_augment(feats, ctx.rng)
        if attrs.get("use_mask"):
            feats = time_mask(feats, ctx.rng)
    k = attrs.get("n_frames_per_step") or 1
    if k > 1:  # pack k frames per step
        frames = feats.shape[0] // k * k
        feats = feats[:frames].reshape(frames // k, -1)
    return Features(feats, {"seconds": seconds})


def _check_length(wav, rate: int, max_seconds) -> None:
    if max_seconds and len(wav) > max_seconds * rate:
        raise ValueError(f"audio of {len(wav) / rate:.1f} s is longer than max_seconds={max_seconds}")


def audio_embed(value, attrs: dict, ctx: Context) -> Features:
    """Pre-extracted features: base64 of big-endian float32, `dim` values per frame."""
    return Features(torch.from_numpy(embedded_features(value, attrs["dim"])))


REGISTRY.add("audio_embed", audio_embed, required=("dim",),
             unsupported="pre-extracted features (preprocess=audio_embed) are 439 wide and the audio adaptor reads "
                         "80-bin frames: their input projection is not built yet; give the audio itself")
