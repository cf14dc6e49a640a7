"""AUDIO outputs, part by part: the speech target's features and statistics, the frames target
and head with its loss, speech generation with per-row stopping, the vocoder, MCD, and
`Output.waveform` / `save_audio`.  End to end (a run that learns to speak) in
test_speech_training.py."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import lower

from ofac.runtime.codec.speech import (
    SpeechCodec,
    SpeechFeatures,
    Statistics,
    griffin_lim,
    griffin_lim_numpy,
    mel_filters,
)
from ofac.runtime.data.collate import collate
from ofac.runtime.evaluate.postprocess import Speech
from ofac.runtime.evaluate.scorer import Scorer
from ofac.runtime.evaluate.speech import distortion, dtw, mcd, trim
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.generate.eager import generate
from ofac.runtime.generate.speech import SpeechConfig
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.heads.frames import guided_attention, tacotron2
from ofac.runtime.model.network import EncoderDecoder
from ofac.runtime.preprocess.audio import log_mel
from ofac.runtime.serve.answer import Output

TTS = "[PHONE:phones] -> [AUDIO:audio,adaptor=audio_tgt_fbank]"
RATE = 22050
FEATURES = SpeechFeatures()


def tone(freq: float, seconds: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float = 0.6) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)))).astype(np.float32)


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    stats = Statistics(80)
    for f in (200, 400, 800, 1600, 3200):
        stats.add(log_mel(tone(f), RATE, vars(FEATURES)).numpy())
    return SpeechCodec.save(tmp_path_factory.mktemp("speech") / "audio", FEATURES, stats)


def test_the_tts_instruction_lowers_to_the_speech_target_features():
    """OFASys' TTS target: 22,050 Hz log-mel of 80 bins, STFT 1024/256, 0-8 kHz (not the encoder's
    16 kHz fbank), packed 4 a step; its loss, generator and postprocessor; MCD by default."""
    task = lower(TTS)
    p = task.programs[0]
    pre = p.arg(p.arg(p.only("target")))
    assert pre.name == "audio" and dict(pre.attrs) | {} == dict(pre.attrs)
    assert (pre.get("sample_rate"), pre.get("n_mels"), pre.get("n_fft"), pre.get("hop_length"),
            pre.get("f_max"), pre.get("n_frames_per_step")) == (22050, 80, 1024, 256, 8000.0, 4)
    assert p.only("loss").name == "tacotron2" and p.only("loss").get("bce_pos_weight") == 5.0
    assert p.only("generate").name == "speech" and p.only("postprocess").name == "waveform"
    assert task.get("metric") == "mcd"
    # the encoder side keeps its fbank
    enc = lower("[AUDIO:wav] what is said? -> [TEXT:text]").programs[0]
    assert enc.arg(enc.of_kind("adapt")[0]).get("sample_rate") == 16000
    assert enc.arg(enc.of_kind("adapt")[0]).get("n_fft") is None
    # and a slot attribute still wins
    packed = lower("[PHONE:p] -> [AUDIO:a,adaptor=audio_tgt_fbank,n_frames_per_step=2]").programs[0]
    assert packed.arg(packed.arg(packed.only("target"))).get("n_frames_per_step") == 2


def test_the_legacy_tts_instruction_lowers_alike():
    """OFASys' legacy template `<BOS> [PHONE:phone] <EOS> -> ...` is the same task (its markers are
    the automatic BOS/EOS)."""
    legacy, modern = lower("<BOS> [PHONE:phones] <EOS> -> [AUDIO:audio,adaptor=audio_tgt_fbank]"), lower(TTS)
    strip = lambda t: [(op.kind, op.name, op.args, op.attrs) for op in t.programs[0].ops]  # noqa: E731
    assert strip(legacy) == strip(modern)


def test_log_mel_puts_a_tone_in_its_mel_bin():
    low, high = (log_mel(tone(f), RATE, vars(FEATURES)).numpy().mean(0).argmax() for f in (300, 3000))
    assert log_mel(tone(300), RATE, vars(FEATURES)).shape == (int(0.5 * RATE) // 256 + 1, 80)
    assert 5 <= low < high <= 75
    # resampled on the way in: the same tone at 16 kHz lands in the same bin
    t16 = (0.3 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)).astype(np.float32)
    assert abs(int(log_mel(t16, 16000, vars(FEATURES)).numpy().mean(0).argmax()) - int(low)) <= 1


def test_statistics_normalize_and_round_trip(codec):
    x = log_mel(tone(800), RATE, vars(FEATURES)).numpy()
    y = codec.normalize(x)
    assert np.allclose(codec.denormalize(y), x, atol=1e-4)
    again = SpeechCodec.load(codec.folder)
    assert again.features == FEATURES and np.allclose(again.mean, codec.mean)


def test_griffin_lim_resynthesis_sounds_like_the_original():
    """The vocoder floor: a chirp re-synthesized from its log-mel frames is far closer (MCD) to
    itself than to another chirp, and keeps its length."""
    a, b = chirp(300, 2000), chirp(2500, 600)
    back = griffin_lim(log_mel(a, RATE, vars(FEATURES)).numpy(), FEATURES)
    assert abs(len(back) - len(a)) < 2 * 256
    same, other = distortion(back, a, RATE), distortion(b, a, RATE)
    assert same["mcd"] < 0.5 * other["mcd"]
    assert 0.9 < same["length_ratio"] < 1.1


def test_the_numpy_vocoder_is_torchaudios_griffin_lim():
    """The torch-free runtime's vocoder: the same mel filters, and the same waveform to float
    rounding (Griffin-Lim amplifies rounding a little over its iterations)."""
    import torchaudio

    fb = torchaudio.functional.melscale_fbanks(513, 0.0, 8000.0, 80, RATE, norm="slaney", mel_scale="slaney")
    assert np.abs(mel_filters(FEATURES) - fb.numpy()).max() < 1e-6
    logmel = log_mel(chirp(300, 2000), RATE, vars(FEATURES)).numpy()
    a, b = griffin_lim(logmel, FEATURES), griffin_lim_numpy(logmel, FEATURES)
    assert a.shape == b.shape and b.dtype == np.float32
    assert np.corrcoef(a, b)[0, 1] > 0.999 and np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_dtw_finds_the_cheapest_monotonic_path():
    cost = np.array([[0.0, 5.0, 5.0], [5.0, 1.0, 5.0], [5.0, 5.0, 0.0], [5.0, 5.0, 2.0]])
    total, path = dtw(cost)
    assert total == 3.0 and path == [(0, 0), (1, 1), (2, 2), (3, 2)]


def test_mcd_is_zero_on_itself_and_trims_silence():
    a = chirp(300, 2000)
    padded = np.concatenate([np.zeros(4000, np.float32), a, np.zeros(3000, np.float32)])
    assert len(trim(padded)) <= len(a) + 1
    speech = Speech(padded, RATE, None, False)
    assert mcd([speech], [(a, RATE)]) == pytest.approx(0.0, abs=1e-6)
    assert mcd([Speech(chirp(2500, 600), RATE, None, False)], [(a, RATE)]) > 3.0


@pytest.fixture()
def tts_batch(vocab, codec, tmp_path):
    task = lower(TTS)
    runner = TaskRunner(task, vocab, "valid", resources={"audio": codec})
    rows = []
    for i, (f, phones) in enumerate(((300, "AH B"), (900, "K AH"), (2000, "B"))):
        sf.write(tmp_path / f"{i}.wav", tone(f, 0.2 + 0.15 * i), RATE, subtype="FLOAT")  # exact samples
        rows.append({"phones": phones, "audio": f"{i}.wav"})
    samples = [runner(r, np.random.default_rng(0), tmp_path, ("t.jsonl", i + 1)) for i, r in enumerate(rows)]
    return task, samples


def test_the_frames_target_normalizes_packs_and_shifts(tts_batch, codec):
    _, samples = tts_batch
    t = samples[0].target
    raw = log_mel(tone(300, 0.2), RATE, vars(FEATURES)).numpy()
    steps = len(raw) // 4
    assert t.length == steps and t.target.shape == (steps, 320)
    assert np.allclose(t.target[0], codec.normalize(raw[:4]).reshape(-1), atol=1e-4)
    assert not t.inputs[0].any() and np.array_equal(t.inputs[1:], t.target[:-1])
    batch = collate(samples)
    assert batch.head == "frames" and batch.decoder.inputs.shape == (3, samples[2].target.length, 320)
    assert batch.decoder.loss_mask.sum(1).tolist() == [s.target.length for s in samples]
    assert batch.meta[0]["waveforms"]["audio"][1] == RATE  # what MCD compares with


def small_model(vocab, width: int = 320) -> EncoderDecoder:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(vocab), d_model=64, ffn_dim=128, encoder_layers=1, decoder_layers=2,
                      heads=2, max_positions=64, outputs=("frames",), frame_dim=width)
    return EncoderDecoder(cfg)


def test_the_frames_head_learns_a_batch_and_its_stop(vocab, tts_batch):
    """Loss falls when training on a batch; the stop logit learns to fire on each row's last step."""
    task, samples = tts_batch
    batch = collate(samples)
    model = small_model(vocab)
    attrs = dict(task.programs[0].only("loss").attrs)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        out = model(batch)
        assert out.attention is not None and out.attention[0].shape[:2] == batch.decoder.target.shape[:2]
        terms = tacotron2(out, batch.decoder, attrs)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        first = first if first is not None else float(terms.total.detach())
    assert float(terms.total.detach()) < 0.3 * first
    model.eval()
    with torch.no_grad():
        out = model(batch)
    numbers = model.heads["frames"].teacher_forced(out, batch.decoder)
    assert numbers["units"] == sum(s.target.length for s in samples)
    # stop decisions: this tiny model fires up to two steps early on some CPUs (an AVX2 one: 16 of
    # 22 right, 300 updates no better; AVX-512 ones over 0.8), never in a row's first half
    assert numbers["correct"] / numbers["units"] > 0.7
    for row, s in enumerate(samples):  # each row's stop logit peaks on its last step
        assert int(out.stop[row, :s.target.length].argmax()) == s.target.length - 1
        assert not (out.stop[row, :s.target.length // 2] > 0).any()


def test_guided_attention_penalizes_off_diagonal_alignments():
    T, S = 6, 6
    diagonal = torch.eye(T)[None]
    flipped = torch.eye(T).flip(1)[None]
    mask = torch.ones(1, 1, 1, S, dtype=torch.bool)
    lengths = torch.tensor([T])
    assert guided_attention(diagonal, mask, lengths).sum() < 0.2 * guided_attention(flipped, mask, lengths).sum()


def test_speech_generation_stops_per_row(vocab, tts_batch):
    _, samples = tts_batch
    batch = collate(samples)
    model = small_model(vocab)
    head = model.heads["frames"]
    with torch.no_grad():  # never stop: every row runs to max_len
        head.stop.bias.fill_(-50.0)
    hyps = generate(model, batch, SpeechConfig(max_len=7))
    assert [len(h[0].tokens.steps) for h in hyps] == [7, 7, 7] and not any(h[0].tokens.stopped for h in hyps)
    with torch.no_grad():  # stop at once
        head.stop.bias.fill_(50.0)
    hyps = generate(model, batch, SpeechConfig(max_len=7))
    assert [len(h[0].tokens.steps) for h in hyps] == [1, 1, 1] and all(h[0].tokens.stopped for h in hyps)
    with torch.no_grad():  # row-dependent: the stop logit follows the encoder, rows stop apart
        head.stop.bias.fill_(0.0)
        head.stop.weight.normal_(0, 3.0)
    lengths = {len(h[0].tokens.steps) for h in generate(model, batch, SpeechConfig(max_len=30))}
    assert lengths <= set(range(1, 31))
    assert model.training  # restored
    # the prenet's dropout stays on, drawn from the seed: one seed, one utterance
    with torch.no_grad():
        head.stop.bias.fill_(-50.0)
    once, again, other = (generate(model, batch, SpeechConfig(max_len=6, seed=s)) for s in (1, 1, 2))
    assert np.array_equal(once[0][0].tokens.steps, again[0][0].tokens.steps)
    assert not np.allclose(once[0][0].tokens.steps, other[0][0].tokens.steps)


def test_the_scorer_vocodes_and_scores_speech(vocab, tts_batch, codec):
    task, samples = tts_batch
    scorer = Scorer(task, vocab, resources={"audio": codec})
    batch = collate(samples)
    model = small_model(vocab)
    with torch.no_grad():
        model.heads["frames"].stop.bias.fill_(-50.0)  # never stops: five steps of four frames
    hyps = generate(model, batch, scorer.generation.__class__(max_len=5))
    out = scorer.output(hyps[0][0].tokens, batch.meta[0])
    assert isinstance(out, Speech) and out.sample_rate == RATE and out.waveform.dtype == np.float32
    assert out.frames.shape == (20, 80) and out.hit_max_len
    assert len(out.waveform) == pytest.approx(20 * 256, abs=256)
    assert scorer.metric([out], [scorer.reference(batch.meta[0])]) > 0


def test_output_speech_saves_and_serializes(tmp_path):
    wav = chirp(300, 900, 0.3)
    out = Output(speech=Speech(wav, RATE, np.zeros((3, 80), np.float32), False))
    assert out.sample_rate == RATE and out.waveform is wav and not out.hit_max_len
    path = out.save_audio(tmp_path / "hello")
    back, rate = sf.read(path, dtype="float32")
    assert path.suffix == ".wav" and rate == RATE and np.allclose(back, wav, atol=1e-4)
    back, rate = sf.read(out.save_audio(tmp_path / "low.flac", sample_rate=16000))
    assert rate == 16000 and abs(len(back) - len(wav) * 16000 / RATE) < 4
    assert np.load(out.save_fbank(tmp_path / "f")).shape == (3, 80)
    d = out.to_dict()
    header, data = d["audio"].split(",", 1)
    assert header == "data:audio/wav;base64" and d["seconds"] == pytest.approx(0.3, abs=1e-3)
    assert len(sf.read(io.BytesIO(base64.b64decode(data)))[0]) == len(wav)
    with pytest.raises(ValueError, match="no generated speech"):
        Output(text="x").save_audio(tmp_path / "x.wav")


@pytest.mark.parametrize("vocoder", ["torch", "numpy"])
def test_a_generation_of_a_few_frames_vocodes(vocoder):
    """An untrained model may stop after one frame; Griffin-Lim's STFT needs more than n_fft / 2
    samples, so the vocoder pads with the quietest frame and keeps the frames' own length."""
    codec = SpeechCodec.unnormalized(SpeechFeatures())
    codec.vocoder = vocoder
    hop = codec.features.hop_length
    for frames in (1, 3):
        logmel = np.random.default_rng(frames).normal(-4, 1, (frames, codec.features.n_mels)).astype(np.float32)
        wav = codec.vocode(logmel, iterations=2)
        assert wav.shape == (frames * hop,) and np.isfinite(wav).all()
    assert codec.vocode(np.zeros((0, codec.features.n_mels), np.float32)).shape == (0,)
