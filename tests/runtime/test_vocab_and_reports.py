"""The run's vocabulary, the skip report, STRUCT budgets, masks, more media formats."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import lower
from media import write_audio, write_video

from ofac.runtime.data import SkipReport, TaskData, open_source
from ofac.runtime.data.collate import collate
from ofac.runtime.data.corpus import build_vocab, corpus
from ofac.runtime.data.dataset import Skipped
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.preprocess import struct
from ofac.runtime.preprocess.base import Context
from ofac.runtime.vocab.tokenizer import Vocab


def _data(tmp_path, instruction, rows, name="t"):
    (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = lower(instruction, name)
    return task, TaskData(TaskRunner(task, None, "train"), [open_source(tmp_path / f"{name}.jsonl")])


def test_vocab_is_trained_on_instructions_and_text_columns(tmp_path):
    cap = _data(tmp_path, "[IMAGE:img] what does the picture show? -> [TEXT:cap]",
                [{"img": "a.png", "cap": "zebra crossing"}] * 3, "cap")
    det = _data(tmp_path, "[IMAGE:img] objects? -> ([BOX:boxes] [TEXT:labels])*",
                [{"img": "a.png", "boxes": [[0, 0, 1, 1]], "labels": ["giraffe"]}], "det")
    tts = _data(tmp_path, "[PHONE:p] -> [TEXT:t]", [{"p": "HH AH L OW", "t": "hello"}], "tts")
    tab = _data(tmp_path, "[STRUCT:s] -> [TEXT:t]", [{"s": [["Alan", "born in", "London"]], "t": "x"}], "tab")
    tasks, datas = zip(cap, det, tts, tab)
    texts, symbols = corpus(tasks, datas)
    phones = symbols["phones"]
    assert "what does the picture show?" in texts and "zebra crossing" in texts and "giraffe" in texts
    assert "alan : born in : london" in texts and phones == {"HH", "AH", "L", "OW"}
    vocab = build_vocab(list(tasks), list(datas), vocab_size=300)
    assert len(vocab.bin_ids) == 1000 and set(vocab.phone_ids) == phones
    assert vocab.decode(vocab.encode("zebra crossing")) == "zebra crossing"
    vocab.save(tmp_path / "tokenizer.json")
    again = Vocab.load(tmp_path / "tokenizer.json")
    assert again.encode("giraffe") == vocab.encode("giraffe") and again.phone_ids == vocab.phone_ids


def test_loading_a_foreign_tokenizer_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.BPE()).save(str(tmp_path / "t.json"))
    with pytest.raises(ValueError, match="not an ofac tokenizer"):
        Vocab.load(tmp_path / "t.json")


def test_skip_report_per_task_epoch():
    report = SkipReport()
    report.add([Skipped("cap", "d.jsonl", 3, "missing column `cap`", 0),
                Skipped("cap", "d.jsonl", 9, "unreadable image", 0), Skipped("cap", "d.jsonl", 4, "x", 1)])
    text = report.epoch_summary("cap", 0)
    assert "skipped 2 bad rows" in text and "d.jsonl row 3: missing column `cap`" in text
    assert report.epoch_summary("cap", 0) is None and "skipped 1 bad row " in report.epoch_summary("cap", 1)


def test_struct_max_length_budgets_cells_instead_of_dropping_rows(vocab):
    ctx = Context(vocab, "valid", np.random.default_rng(0))
    rows = [[f"row {i} " + "with a very long cell " * 6, f"value {i}"] for i in range(4)]
    full = struct.table(rows, {}, ctx)
    toks = struct.table(rows, {"max_length": 100}, ctx)
    text = vocab.decode(toks.ids)
    assert len(full.ids) > 200 and len(toks.ids) <= 100 and all(f"row {i}" in text for i in range(4))


def test_batch_masks_mark_real_positions(tmp_path, vocab):
    write_audio(tmp_path / "a.wav", seconds=0.5, rate=16000)
    write_audio(tmp_path / "b.wav", seconds=1.0, rate=16000)
    runner = TaskRunner(lower("[AUDIO:wav] said? -> [TEXT:t]"), vocab, "valid")
    rng = np.random.default_rng(0)
    b = collate([runner({"wav": n, "t": "x"}, rng, tmp_path) for n in ("a.wav", "b.wav")])
    mask = b.mask("audio_fbank")
    assert mask.shape == b.inputs["audio_fbank"].shape[:2] and mask[1].all() and not mask[0].all()
    assert int(mask[0].sum()) == int(b.lengths["audio_fbank"][0])
    assert torch.equal(b.mask("text").sum(1), b.lengths["text"])


@pytest.mark.parametrize("ext", ["ogg", "wav", "flac"])
def test_audio_containers(tmp_path, vocab, ext):
    write_audio(tmp_path / f"a.{ext}", seconds=0.4, rate=16000)
    s = TaskRunner(lower("[AUDIO:wav] said? -> [TEXT:t]"), vocab, "valid")(
        {"wav": f"a.{ext}", "t": "x"}, np.random.default_rng(0), tmp_path)
    assert s.encoder[0].data.shape[1] == 80 and 35 <= s.encoder[0].data.shape[0] <= 40


@pytest.mark.parametrize("ext", ["avi", "mkv"])
def test_video_containers(tmp_path, vocab, ext):
    write_video(tmp_path / f"v.{ext}", frames=10)
    s = TaskRunner(lower("[VIDEO:v] what? -> [TEXT:t]"), vocab, "valid")(
        {"v": f"v.{ext}", "t": "x"}, np.random.default_rng(0), tmp_path)
    assert s.encoder[0].data.shape == (8, 3, 256, 256)
