"""`[TEXT:text,preprocess=text_phone]` (OFASys' ASR target): the decoder learns the text's BPE
tokens and the encoder's audio states a CTC over its phonemes (espeak-ng), OFASys'
speech_to_text_loss.  The figures with and without the CTC are benchmarks/RESULTS.md's."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ofac import compile_instruction
from ofac.compiler import compile_source
from ofac.runtime.data.collate import collate
from ofac.runtime.data.corpus import corpus, reserved_for
from ofac.runtime.data.sources import open_source
from ofac.runtime.data.tasks import TaskData
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.heads.tokens import label_smoothed_ce, speech_to_text
from ofac.runtime.model.network import EncoderDecoder
from ofac.runtime.preprocess.g2p import ctc_phones, phonemes
from ofac.runtime.train.recipe import TrainingRun
from ofac.runtime.train.update import TaskLoss
from ofac.runtime.vocab.tokenizer import BLANK_PHONE, train_vocab

ROOT = Path(__file__).resolve().parents[2]
AUDIO = ROOT / "examples" / "data"  # asr.jsonl: three spoken digit strings
ASR = "[AUDIO:wav] what is the text corresponding to the voice? -> [TEXT:text,preprocess=text_phone]"


def _rows() -> list[dict]:
    return [json.loads(line) for line in (AUDIO / "asr.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def setup():
    task, diags = compile_instruction(ASR)
    assert task is not None, [d.message for d in diags]
    data = TaskData(TaskRunner(task, None, "train"), [open_source(_rows(), base_dir=AUDIO)])
    texts, symbols = corpus([task], [data])
    vocab = train_vocab(texts * 5, 300, reserved_for([task], symbols["phones"]))
    data.runner.vocab = vocab
    return task, vocab, data


def test_phonemes_are_espeaks_without_stress_or_word_marks():
    assert phonemes("three one") == "T r 'i: | w ,0 n"  # primary ' and secondary , stress
    assert ctc_phones("three one") == ["T", "r", "i:", "w", "0", "n"]


def test_the_phones_of_the_training_text_get_tokens_the_blank_first(setup):
    _, vocab, _ = setup
    phones = {p for r in _rows() for p in ctc_phones(r["text"])}
    assert set(vocab.phone_ids) == phones | {BLANK_PHONE}
    first = min(vocab.phone_ids.values())
    assert vocab.phone_ids[BLANK_PHONE] == first  # CTC's blank is offset 0 of the phone range
    assert sorted(vocab.phone_ids.values()) == list(range(first, first + len(phones) + 1))  # one range


def test_a_row_carries_its_phonemes_as_the_ctc_target(setup):
    task, vocab, data = setup
    sample = data.sample(0, np.random.default_rng(0))
    first = vocab.phone_ids[BLANK_PHONE]
    assert [vocab.phone_ids[p] - first for p in ctc_phones("three one four")] == sample.target.phones
    assert sample.target.ctc == (0, first, len(vocab.phone_ids))  # the audio is encoder segment 0
    assert vocab.decode([t for t, m in zip(sample.target.target, sample.target.loss_mask) if m]) == "three one four"
    test = TaskRunner(task, vocab, "test")({"wav": "audio/digits_0.flac"}, np.random.default_rng(0), AUDIO)
    assert test.target.phones is None  # nothing to train at inference


def test_ctc_weight_zero_is_the_plain_cross_entropy(setup):
    source = f"task asr {{\n  instruction: {ASR}\n  ctc_weight = 0\n}}\n"
    compiled, diags = compile_source(source, "<t>", None, check_data=False)
    assert compiled is not None, [d.message for d in diags]
    loss = compiled.tasks[0].programs[0].only("loss")
    assert loss.get("ctc_weight") == 0.0
    _, vocab, _ = setup
    runner = TaskRunner(compiled.tasks[0], vocab, "train")
    assert runner(_rows()[0], np.random.default_rng(0), AUDIO).target.phones is None


def test_the_loss_adds_the_ctc_of_the_audio_states_over_the_phone_embeddings(setup):
    task, vocab, data = setup
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                       decoder_layers=1, heads=2, dropout=0.0, adaptors=("audio_fbank", "text")))
    batch = collate([data.sample(i, np.random.default_rng(i)) for i in range(3)])
    model.train()
    outputs = model(batch)
    loss = TaskLoss.of(task)
    terms = speech_to_text(outputs, batch.decoder, loss.attrs)
    logits, _ = outputs
    plain = label_smoothed_ce(logits, batch.decoder, loss.attrs)
    # the CTC by hand: the audio segment (first in the encoder) of each row, its states
    # projected on the phone rows of the shared embedding, the blank first
    memory, _ = model.encode(batch)
    _, audio_lengths = model.embed_input("audio_fbank", batch.inputs["audio_fbank"], batch.lengths["audio_fbank"])
    first, count = min(vocab.phone_ids.values()), len(vocab.phone_ids)
    total = 0.0
    for b in range(3):
        n = int(audio_lengths[b])
        lp = (memory[b, :n] @ model.embed.weight[first:first + count].T).log_softmax(-1)
        target = batch.decoder.phones[b, :int(batch.decoder.phone_lengths[b])]
        total = total + F.ctc_loss(lp[:, None], target[None], torch.tensor([n]), torch.tensor([len(target)]), blank=0,
                                   reduction="sum")
    assert terms.total.item() == pytest.approx(plain.total.item() + total.item(), rel=1e-4)
    assert terms.nll.item() == pytest.approx(plain.nll.item())  # reported: the decoder's
    terms.total.backward()  # the CTC trains the encoder and the phone embeddings
    assert model.embed.weight.grad[first:first + count].abs().sum() > 0
    model.eval()
    assert isinstance(model(batch), torch.Tensor)  # validation scores the decoder alone


def test_text_phone_needs_an_audio_input():
    task, diags = compile_instruction("[IMAGE:i] what is written? -> [TEXT:t,preprocess=text_phone]")
    assert task is None and [d.code for d in diags] == ["E0046"]


@pytest.mark.slow
def test_an_asr_run_trains_both_losses(tmp_path):
    (tmp_path / "asr.jsonl").write_text("".join(json.dumps({**r, "wav": str(AUDIO / r["wav"])}) + "\n"
                                                for r in _rows()))
    source = f"""
task asr {{
    instruction: {ASR}
    train = asr.jsonl
    micro_batch_size = 3
}}
model {{ d_model = 64  ffn_dim = 128  encoder_layers = 2  decoder_layers = 2  heads = 4  vocab_size = 300 }}
train {{ steps = 60  lr = 3e-3  warmup = 5  precision = fp32  out = run  seed = 1 }}
"""
    compiled, diags = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    TrainingRun(compiled, tmp_path).fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
