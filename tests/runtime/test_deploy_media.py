"""The numpy media preprocessors of the torch-free runtime against the torch data path, on
real files: the same instruction run by both gives the same model inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio
from conftest import lower
from media import write_image, write_video

from ofac.runtime.data.collate import collate
from ofac.runtime.errors import NotSupportedYet
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.preprocess.numpy_media import resample
from ofac.runtime.serve import onnx as engine


def both(instruction, row, vocab, tmp_path):
    task = lower(instruction)
    out = []
    for media, pack in (("torch", lambda s: collate(s).to("cpu")), ("numpy", engine.collate)):
        sample = TaskRunner(task, vocab, "test", media=media)(row, np.random.default_rng(0), tmp_path)
        out.append((sample, pack([sample])))
    return out


def test_images_and_their_boxes(tmp_path, vocab):
    write_image(tmp_path / "a.jpg", size=(97, 61), box=(10, 12, 50, 40))
    (st, bt), (sn, bn) = both("[IMAGE:img] which region does the text \" [TEXT:p] \" describe? -> [BOX:b]",
                              {"img": "a.jpg", "p": "the box", "b": "10,12,50,40"}, vocab, tmp_path)
    assert sn.target == st.target  # the box's bin tokens: the same transform of the same box
    assert sn.meta["images"] == st.meta["images"]
    diff = np.abs(bn.inputs["image_patch"] - bt.inputs["image_patch"].numpy())
    assert diff.max() <= 2 / 255 + 1e-5 and (diff > 1e-6).mean() < 0.02  # one uint8 level at most, rarely


def test_video_clips(tmp_path, vocab):
    write_video(tmp_path / "v.mp4", frames=12, size=(40, 30))
    (_, bt), (_, bn) = both("[VIDEO:v] what happens? -> [TEXT:t]", {"v": "v.mp4"}, vocab, tmp_path)
    x, y = bt.inputs["video_image_sequence"].numpy(), bn.inputs["video_image_sequence"]
    assert y.shape == x.shape == (1, 8, 3, 256, 256) and y.dtype == np.float32
    assert np.abs(y - x).max() <= 2 / 255 + 1e-5


@pytest.mark.parametrize("rate", [16000, 22050, 8000])
def test_audio_fbank_matches_torchaudio(tmp_path, vocab, rate):
    import soundfile as sf

    # a tone over a noise floor, as recorded audio has: a pure synthetic tone leaves mel bands
    # whose energy is float32 rounding noise (e^-4 beside e^25), where no two FFTs agree
    t = np.arange(int(0.8 * rate)) / rate
    noise = np.random.default_rng(rate).standard_normal(len(t))
    sf.write(tmp_path / "a.flac", (0.3 * np.sin(2 * np.pi * 523 * t) + 0.01 * noise).astype(np.float32), rate)
    (_, bt), (_, bn) = both("[AUDIO:wav] what is said? -> [TEXT:t]", {"wav": "a.flac"}, vocab, tmp_path)
    x, y = bt.inputs["audio_fbank"].numpy(), bn.inputs["audio_fbank"]
    assert y.shape == x.shape and (bn.lengths["audio_fbank"] == bt.lengths["audio_fbank"].numpy()).all()
    # normalized features (std 1); the largest gaps are in the bands above an upsampled 8 kHz
    # signal's Nyquist, which hold only the resampler's leakage
    assert np.abs(y - x).max() < 0.02 and np.abs(y - x).mean() < 1e-3


def test_resampling_is_torchaudio_s_kernel():
    rng = np.random.default_rng(0)
    wav = rng.standard_normal(22050).astype(np.float32) * 0.1
    for rate in (22050, 44100, 8000, 48000):
        want = torchaudio.transforms.Resample(rate, 16000)(torch.from_numpy(wav)[None])[0].numpy()
        got = resample(wav, rate, 16000)
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_training_needs_the_torch_data_path(tmp_path, vocab):
    write_image(tmp_path / "a.png")
    runner = TaskRunner(lower("[IMAGE:img] what? -> [TEXT:t]"), vocab, "train", media="numpy")
    with pytest.raises(NotSupportedYet, match="without torch"):
        runner({"img": "a.png", "t": "x"}, np.random.default_rng(0), tmp_path)
