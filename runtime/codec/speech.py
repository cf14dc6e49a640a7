"""The speech codec of a run with speech outputs: the global statistics that normalize its
log-mel targets (OFASys' global CMVN: a mean and a standard deviation per mel bin over the
training utterances), and the vocoder that turns generated log-mel frames back into a waveform
(Griffin-Lim: the mel filters inverted by least squares, then 32 phase iterations; nothing to
train, no download).

    FOLDER/config.json   format, the feature settings (SpeechFeatures), mean and std per bin,
                         how many utterances and frames they were counted over

Stage 0 of a run writes it (`train.tokenizers.prepare_speech`); the speech target normalizes
with it (`exec.targets.frames`) and `postprocess.waveform` undoes that and vocodes.  Loading it
is numpy; torch and torchaudio are imported when a waveform is made."""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..store.files import CheckpointError, read_json, write_json

FOLDER = Path("tokenizers") / "audio"  # in a run directory
FORMAT = "ofac-speech-features-1"


@dataclass(frozen=True)
class SpeechFeatures:
    """How a speech target's log-mel frames are computed (the `preprocess.audio` op's decoder-side
    attributes) and packed."""

    sample_rate: int = 22050
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 256
    f_min: float = 0.0
    f_max: float = 8000.0

    @classmethod
    def of(cls, attrs: dict) -> "SpeechFeatures":
        return cls(**{k: type(getattr(cls, k))(attrs[k]) for k in cls.__dataclass_fields__})


def speech_targets(run) -> list[tuple[object, object, object]]:
    """(task, program, op) of every speech target's `preprocess.audio` op (decoder-side log-mel)."""
    return [(t, p, op) for t in run.tasks for p in t.ir.programs for op in p.of_kind("preprocess")
            if op.name == "audio" and op.get("n_fft")]


def features_of(run) -> SpeechFeatures | None:
    """The features the run's speech targets share (None: no speech outputs); tasks that ask
    for different ones are an error (one run, one set of statistics and one vocoder)."""
    ops = speech_targets(run)
    if not ops:
        return None
    found = {SpeechFeatures.of(dict(op.attrs)) for _, _, op in ops}
    if len(found) > 1:
        raise CheckpointError("E0116", f"the run's speech targets ask for different features {sorted(map(str, found))}",
                              Path(run.source), help="give every AUDIO target the same sample rate and mel settings")
    return found.pop()


def frame_width(run) -> int:
    """Values per decoder step of the run's speech outputs (n_mels * n_frames_per_step; 0: none):
    one frames head serves them all, so they must agree."""
    widths = {op.get("n_mels") * (op.get("n_frames_per_step") or 1) for _, _, op in speech_targets(run)}
    if len(widths) > 1:
        raise CheckpointError("E0116", f"the run's speech targets pack steps of different widths {sorted(widths)}",
                              Path(run.source), help="give every AUDIO target the same n_frames_per_step")
    return widths.pop() if widths else 0


class SpeechCodec:
    def __init__(self, folder: Path, config: dict, vocoder: str = "torch"):
        self.folder, self.config, self.vocoder = Path(folder), config, vocoder
        self.features = SpeechFeatures(**config["features"])
        self.mean = np.asarray(config["mean"], dtype=np.float32)
        self.std = np.asarray(config["std"], dtype=np.float32)

    @classmethod
    def load(cls, folder: str | Path, vocoder: str = "torch") -> "SpeechCodec":
        """`vocoder`: "torch" (torchaudio's Griffin-Lim) or "numpy" (the same algorithm without torch)."""
        folder = Path(folder)
        config = read_json(folder / "config.json")
        if config.get("format") != FORMAT:
            raise CheckpointError("E0111", f"not an ofac speech codec (format {config.get('format')!r})",
                                  folder / "config.json", help="delete it: stage 0 computes it again")
        return cls(folder, config, vocoder)

    @classmethod
    def unnormalized(cls, features: SpeechFeatures) -> "SpeechCodec":
        """A stand-in before stage 0 has counted the statistics (`ofac data`): mean 0, std 1."""
        n = features.n_mels
        return cls(Path("."), {"format": FORMAT, "features": asdict(features), "mean": [0.0] * n, "std": [1.0] * n,
                               "utterances": 0, "frames": 0})

    @classmethod
    def save(cls, folder: Path, features: SpeechFeatures, stats: "Statistics") -> "SpeechCodec":
        mean, std = stats.mean_std()
        config = {"format": FORMAT, "features": asdict(features), "mean": mean.tolist(), "std": std.tolist(),
                  "utterances": stats.utterances, "frames": int(stats.count)}
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "config.json", config)
        return cls(folder, config)

    def describe(self) -> str:
        f = self.features
        return (f"{f.n_mels} mels at {f.sample_rate} Hz, statistics of {self.config['utterances']} utterances "
                f"({self.config['frames']} frames)")

    def normalize(self, logmel: np.ndarray) -> np.ndarray:
        return (logmel - self.mean) / self.std

    def denormalize(self, frames: np.ndarray) -> np.ndarray:
        return frames * self.std + self.mean

    def vocode(self, logmel: np.ndarray, iterations: int = 32) -> np.ndarray:
        """Log-mel frames [T, n_mels] -> a float32 waveform at the features' sample rate (in
        torchaudio, or in numpy where the process runs without torch: the ONNX backend)."""
        f = self.features
        short = len(logmel)
        least = f.n_fft // f.hop_length + 2  # Griffin-Lim's STFT pads n_fft / 2 each side by reflection
        if 0 < short < least:  # a very short generation (an untrained model's): pad with its quietest frame
            logmel = np.concatenate([logmel, np.repeat(logmel.min(0, keepdims=True), least - short, 0)])
        vocode = griffin_lim_numpy if self.vocoder == "numpy" else griffin_lim
        wav = vocode(logmel, f, iterations)
        return wav[: short * f.hop_length] if short < least else wav

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "config": self.config, "vocoder": self.vocoder}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["config"], state.get("vocoder", "torch"))


def griffin_lim(logmel: np.ndarray, features: SpeechFeatures, iterations: int = 32) -> np.ndarray:
    """The vocoder: log-mel frames [T, n_mels] -> a float32 waveform (the mel filters inverted
    by least squares, then Griffin-Lim from a zero phase)."""
    import torch

    if len(logmel) == 0:
        return np.zeros(0, dtype=np.float32)
    inverse, phase = _vocoder(features, iterations)
    with torch.no_grad():
        mel = torch.exp(torch.from_numpy(np.ascontiguousarray(logmel, dtype=np.float32)).T)
        wav = phase(inverse(mel).clamp(min=0.0))
    return wav.numpy().astype(np.float32)


@functools.lru_cache(maxsize=4)
def _vocoder(f: SpeechFeatures, iterations: int):
    import torchaudio

    inverse = torchaudio.transforms.InverseMelScale(f.n_fft // 2 + 1, f.n_mels, f.sample_rate, f.f_min, f.f_max,
                                                    norm="slaney", mel_scale="slaney")
    # a fixed (zero) initial phase: one set of frames always gives one waveform
    griffin_lim = torchaudio.transforms.GriffinLim(f.n_fft, n_iter=iterations, win_length=f.n_fft,
                                                   hop_length=f.hop_length, power=1.0, momentum=0.99,
                                                   rand_init=False)
    return inverse, griffin_lim


class Statistics:
    """Running per-bin sums of log-mel frames (float64, so thousands of utterances add up exactly)."""

    def __init__(self, n_mels: int):
        self.sum, self.squares = np.zeros(n_mels), np.zeros(n_mels)
        self.count, self.utterances = 0, 0

    def add(self, logmel: np.ndarray) -> None:
        x = np.asarray(logmel, dtype=np.float64)
        self.sum += x.sum(0)
        self.squares += (x * x).sum(0)
        self.count += len(x)
        self.utterances += 1

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.sum / max(1, self.count)
        var = self.squares / max(1, self.count) - mean * mean
        return mean.astype(np.float32), np.sqrt(np.maximum(var, 1e-4)).astype(np.float32)


# ------------------------------------------------------------------------------ without torch

def _hz_to_mel(f):  # Slaney's scale: linear below 1 kHz, logarithmic above
    f = np.asarray(f, dtype=np.float64)
    step, lin = np.log(6.4) / 27.0, 1000.0 / (200.0 / 3)
    return np.where(f >= 1000.0, lin + np.log(np.maximum(f, 1e-10) / 1000.0) / step, f / (200.0 / 3))


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    step, lin = np.log(6.4) / 27.0, 1000.0 / (200.0 / 3)
    return np.where(m >= lin, 1000.0 * np.exp(step * (m - lin)), m * (200.0 / 3))


def mel_filters(f: SpeechFeatures) -> np.ndarray:
    """[n_fft/2 + 1, n_mels]: the area-normalized triangular filters on Slaney's mel scale that the
    features are computed with (torchaudio's `melscale_fbanks(norm="slaney", mel_scale="slaney")`)."""
    freqs = np.linspace(0, f.sample_rate // 2, f.n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f.f_min), _hz_to_mel(f.f_max), f.n_mels + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    return bank * (2.0 / (edges[2:] - edges[:-2]))[None]


def _window(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann, as torch.hann_window


def _stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    x = np.pad(x, n_fft // 2, mode="reflect")
    count = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:count]
    return np.fft.rfft(frames * window, axis=1).T  # [freqs, frames]


def _istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    frames = np.fft.irfft(spec.T, n=n_fft, axis=1) * window
    count = frames.shape[0]
    out = np.zeros(n_fft + hop * (count - 1))
    norm = np.zeros_like(out)
    for i in range(count):
        out[i * hop:i * hop + n_fft] += frames[i]
        norm[i * hop:i * hop + n_fft] += window * window
    out = out / np.where(norm > 1e-11, norm, 1.0)
    return out[n_fft // 2:len(out) - n_fft // 2]


def griffin_lim_numpy(logmel: np.ndarray, f: SpeechFeatures, iterations: int = 32,
                      momentum: float = 0.99) -> np.ndarray:
    """`griffin_lim` in numpy (the torch-free runtime): the same least-squares inverse of the mel
    filters and the same fast Griffin-Lim from a zero phase, to float rounding."""
    if len(logmel) == 0:
        return np.zeros(0, dtype=np.float32)
    mel = np.exp(np.asarray(logmel, dtype=np.float64)).T  # [n_mels, T]
    magnitude = np.maximum(np.linalg.lstsq(mel_filters(f).T, mel, rcond=None)[0], 0.0)  # [freqs, T]
    window = _window(f.n_fft)
    angles = np.ones_like(magnitude, dtype=np.complex128)
    previous = np.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = _stft(_istft(magnitude * angles, f.n_fft, f.hop_length, window), f.n_fft, f.hop_length, window)
        angles = rebuilt - previous * (momentum / (1 + momentum))
        angles = angles / (np.abs(angles) + 1e-16)
        previous = rebuilt
    return _istft(magnitude * angles, f.n_fft, f.hop_length, window).astype(np.float32)
