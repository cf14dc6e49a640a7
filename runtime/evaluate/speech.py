"""Metrics that listen: mel-cepstral distortion (MCD) of generated speech against its reference,
as fairseq's S^2 evaluation (and OFASys' `eval_tts`) define it, with what its alignment says
about the lengths.

MCD: 13 MFCCs from an 80-bin log-mel spectrogram (50 ms Hann window, 12.5 ms hop) of each
waveform, the RMS distance (over the 13 coefficients) of every generated frame to every
reference frame, the cheapest monotonic alignment by dynamic time warping, and its cost summed
over the path divided by the reference's frames.  Leading and trailing silence is trimmed first
(espeak-ng writes exact digital silence; untrimmed, silence frames dominate the score).  Lower
is better; the vocoder's own floor is the MCD of the reference against its Griffin-Lim
re-synthesis.

One deviation from fairseq, measured: its mel filters span 20 Hz to half the sample rate, and
the speech targets (OFASys' TTS features) stop at 8 kHz, so no vocoder of those frames can
restore 8-11 kHz, where the log of near-silence is large.  Over the full band the Griffin-Lim
floor on the zoo's 60 held-out phrases is 5.99 and another phrase scores 7.50 (benchmarks/
RESULTS.md, speech_zoo).  The filters here stop at `BAND` (8 kHz: floor 0.88, another phrase
7.72); `band=None` gives fairseq's full band."""
from __future__ import annotations

import functools

import numpy as np

SILENCE = 0.01  # of the peak amplitude: quieter leading and trailing samples are trimmed
BAND = 8000.0  # Hz: the top of the mel filters (the speech targets' f_max)


def trim(wav: np.ndarray, threshold: float = SILENCE) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    loud = np.flatnonzero(np.abs(wav) > threshold * max(float(np.abs(wav).max(initial=0.0)), 1e-8))
    return wav[loud[0]:loud[-1] + 1] if len(loud) else wav[:0]


@functools.lru_cache(maxsize=4)
def _mfcc(rate: int, band: float | None):
    import torch
    import torchaudio

    window = int(0.05 * rate)
    return torchaudio.transforms.MFCC(rate, n_mfcc=13, log_mels=True, melkwargs={
        "n_fft": window, "win_length": window, "hop_length": int(0.0125 * rate), "f_min": 20.0, "n_mels": 80,
        "window_fn": torch.hann_window, "f_max": min(band, rate / 2) if band else None})


def mfcc(wav: np.ndarray, rate: int, band: float | None = BAND) -> np.ndarray:
    """[frames, 13] of a waveform (trimmed first)."""
    import torch

    x = trim(wav)
    if len(x) < int(0.05 * rate):
        x = np.pad(x, (0, int(0.05 * rate) - len(x)))
    with torch.no_grad():
        return _mfcc(rate, band)(torch.from_numpy(x)).T.double().numpy()


def dtw(cost: np.ndarray) -> tuple[float, list[tuple[int, int]]]:
    """The cheapest monotonic path through `cost` [N, M] from (0, 0) to (N-1, M-1) with steps
    (1, 0), (0, 1), (1, 1): its summed cost and its cells."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row, above, c = acc[i], acc[i - 1], cost[i - 1]
        for j in range(1, m + 1):
            row[j] = c[j - 1] + min(above[j - 1], above[j], row[j - 1])
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        moves = ((acc[i - 1, j - 1], i - 1, j - 1), (acc[i - 1, j], i - 1, j), (acc[i, j - 1], i, j - 1))
        _, i, j = min(moves, key=lambda t: t[0])
    return float(acc[n, m]), path[::-1]


def distortion(generated: np.ndarray, reference: np.ndarray, rate: int, band: float | None = BAND) -> dict:
    """MCD of one generated waveform against its reference, and from the alignment: the length
    ratio (generated / reference frames) and the insertion / deletion rates (path steps that
    stay on a reference frame / skip ahead on it, per reference frame)."""
    a, b = mfcc(generated, rate, band), mfcc(reference, rate, band)
    cost = np.sqrt(((a[:, None] - b[None]) ** 2).mean(-1))
    total, path = dtw(cost)
    steps = np.diff(np.array(path), axis=0) if len(path) > 1 else np.zeros((0, 2), int)
    return {"mcd": total / len(b), "length_ratio": len(a) / len(b),
            "ins_rate": float(np.sum(steps[:, 1] == 0)) / len(b), "del_rate": float(np.sum(steps[:, 0] == 0)) / len(b)}


def speech_pairs(preds: list, refs: list) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(generated, reference, rate) per example: the reference resampled to the output's rate."""
    pairs = []
    for p, r in zip(preds, refs):
        if p is None or r is None:
            raise ValueError("an example has no generated or reference speech")
        wav, rate = r
        if rate != p.sample_rate:
            from ..preprocess.audio import resample

            wav = resample(wav, rate, p.sample_rate)
        pairs.append((p.waveform, wav, p.sample_rate))
    return pairs


def mcd(preds: list, refs: list) -> float:
    """Mean MCD of generated speech (postprocess.waveform's Speech) against the references'
    (waveform, rate)."""
    values = [distortion(g, r, rate)["mcd"] for g, r, rate in speech_pairs(preds, refs)]
    return float(np.mean(values)) if values else 0.0
