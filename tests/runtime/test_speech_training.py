"""Speech outputs end to end: OFASys' TTS instruction trains on espeak-ng speech, and on phrases
it never saw the model speaks closer to the reference (MCD) than the same model re-initialized,
and its stop token fires; `ofac infer --save-audio` writes the speech; its export speaks the same
frames without torch.
The figures the full example reaches are benchmarks/speech_zoo.py's."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_export import BLOCK_TORCH

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

TASKS = """
task tts {{
    instruction: [PHONE:phones] -> [AUDIO:audio,adaptor=audio_tgt_fbank]
    train = {data}/tts_train.jsonl
    valid = {data}/tts_valid.jsonl
    micro_batch_size = 16
    generate {{ max_len = 60 }}
}}
model {{
    d_model = 96
    ffn_dim = 256
    encoder_layers = 2
    decoder_layers = 2
    heads = 4
    vocab_size = 300
    dropout = 0.0
}}
train {{
    steps = 250
    lr = 2e-3
    warmup = 50
    precision = fp32
    eval_every = 250
    out = {out}
}}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ofac import compiler
    from ofac.runtime.train.recipe import TrainingRun

    tmp = tmp_path_factory.mktemp("tts")
    data = tmp / "speech"
    made = subprocess.run([sys.executable, str(ROOT / "examples" / "make_speech.py"), "--out", str(data),
                           "--train", "300", "--valid", "12"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    path = tmp / "tts.ofa"
    path.write_text(TASKS.format(data=data, out=tmp / "run"))
    TrainingRun(compiler.load(path), tmp, out=tmp / "run").fit()
    return tmp / "run", data


def held_out(data: Path):
    rows = [json.loads(line) for line in (data / "tts_valid.jsonl").read_text().splitlines()]
    return rows, [sf.read(data / r["audio"], dtype="float32")[0] for r in rows]


def test_the_model_speaks_unseen_phrases_better_than_untrained(trained):
    from ofac.runtime.evaluate.speech import distortion
    from ofac.runtime.serve.answer import OFASys

    run, data = trained
    rows, refs = held_out(data)
    system = OFASys.from_pretrained(run)
    outs = system.inference("tts", [{"phones": r["phones"]} for r in rows])
    scores = [distortion(o.waveform, w, o.sample_rate) for o, w in zip(outs, refs)]
    torch.manual_seed(1)
    for module in system.backend.model.modules():  # the same model, re-initialized
        if hasattr(module, "reset_parameters") and module is not system.backend.model:
            module.reset_parameters()
    baseline = [distortion(o.waveform, w, o.sample_rate)
                for o, w in zip(system.inference("tts", [{"phones": r["phones"]} for r in rows]), refs)]
    trained_mcd, untrained_mcd = np.mean([s["mcd"] for s in scores]), np.mean([s["mcd"] for s in baseline])
    assert trained_mcd < 0.75 * untrained_mcd, (trained_mcd, untrained_mcd)
    assert np.mean([o.hit_max_len for o in outs]) <= 0.25  # the stop token fires
    assert 0.5 < np.mean([s["length_ratio"] for s in scores]) < 1.6


SPEAK_WITHOUT_TORCH = BLOCK_TORCH + """
import json
import numpy as np
import ofac
model = ofac.load(sys.argv[1])
outs = model.inference("tts", json.loads(sys.argv[2]), seed=7)
np.savez(sys.argv[3], *[o.fbank for o in outs], waves=np.concatenate([o.waveform for o in outs]))
print(json.dumps({"torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
                  "stopped": [not o.hit_max_len for o in outs]}))
"""


def test_infer_saves_audio(trained, tmp_path):
    run, data = trained
    rows, _ = held_out(data)
    wav = tmp_path / "said.wav"
    done = subprocess.run([sys.executable, "-m", "ofac", "infer", str(run), "--task", "tts", "--data",
                           f"phones={rows[0]['phones']}", "--save-audio", str(wav)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "speech" in done.stdout and f"wrote {wav}" in done.stderr
    audio, rate = sf.read(wav)
    assert rate == 22050 and len(audio) > 0.1 * rate


def test_the_export_speaks_the_same_frames_without_torch(trained, tmp_path):
    """ONNX Runtime and numpy (Griffin-Lim too) in a process where torch cannot load: for one seed,
    the frames PyTorch generates, to 1e-4, and speech as close to the reference."""
    from ofac.runtime.evaluate.speech import distortion
    from ofac.runtime.serve.answer import OFASys
    from ofac.runtime.serve.export import export

    run, data = trained
    rows, refs = held_out(data)
    export(run, out=tmp_path / "onnx")
    phones = [{"phones": r["phones"]} for r in rows[:6]]
    proc = subprocess.run([sys.executable, "-c", SPEAK_WITHOUT_TORCH, str(tmp_path / "onnx"), json.dumps(phones),
                           str(tmp_path / "said.npz")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["torch"] == []
    expected = OFASys.from_pretrained(run).inference("tts", phones, seed=7)
    with np.load(tmp_path / "said.npz") as got:
        for k, o in enumerate(expected):
            assert got[f"arr_{k}"].shape == o.fbank.shape
            assert np.abs(got[f"arr_{k}"] - o.fbank).max() < 1e-4
        waves = got["waves"]
    torch_mcd = np.mean([distortion(o.waveform, w, 22050)["mcd"] for o, w in zip(expected, refs)])
    offsets = np.cumsum([0] + [len(o.waveform) for o in expected])
    numpy_mcd = np.mean([distortion(waves[a:b], w, 22050)["mcd"] for a, b, w in zip(offsets, offsets[1:], refs)])
    assert abs(numpy_mcd - torch_mcd) < 0.1 * torch_mcd
