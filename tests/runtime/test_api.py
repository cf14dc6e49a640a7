"""The OFASys-style Python API writes the same run directory as `ofac run`."""
from __future__ import annotations

import json

import pytest

from ofac import CompileError, GeneralistModel, Task, Trainer


def test_task_trainer_model_like_ofasys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"sentence": f"the quick brown fox number {i % 5} jumps"} for i in range(24)]
    infill = Task(name="text_infilling",
                  instruction='what is the complete text of " [TEXT:sentence,mask_ratio=0.3] "? -> [TEXT:sentence]',
                  micro_batch_size=4)
    infill.add_dataset(rows[:20], "train")
    infill.add_dataset(rows[20:], "valid")
    copy = Task(name="copy", instruction="repeat: [TEXT:sentence] -> [TEXT:sentence]", micro_batch_size=4)
    (tmp_path / "copy.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    copy.add_dataset(str(tmp_path / "copy.jsonl"), "train")
    model = GeneralistModel(d_model=64, ffn_dim=128, encoder_layers=1, decoder_layers=1, heads=4, vocab_size=300)
    result = Trainer(steps=30, lr=3e-3, warmup=3, eval_every=30, save_every=30, out="run").fit(
        model=model, tasks=[infill, copy])
    assert result.step == 30 and model.run_dir == tmp_path / "run"
    for name in ("config.json", "tokenizer.json", "programs.json", "metrics.jsonl", "checkpoints/latest"):
        assert (tmp_path / "run" / name).exists(), name
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["tasks"] == ["text_infilling", "copy"] and config["model"]["d_model"] == 64
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]


def test_mistakes_are_caught_before_training():
    with pytest.raises(CompileError) as err:
        Task(name="bad", instruction="[IMAGES:img] what? -> [TEXT:cap]")
    assert "did you mean `IMAGE`" in str(err.value)
    with pytest.raises(ValueError, match="did you mean `micro_batch_size`"):
        Task(name="t", instruction="[TEXT:a] -> [TEXT:b]", micro_batchsize=4)
    with pytest.raises(ValueError, match="out of range"):
        Task(name="t", instruction="[TEXT:a] -> [TEXT:b]", micro_batch_size=0)
    with pytest.raises(ValueError, match="choose one of"):
        Trainer(mixing="roundrobin")
    with pytest.raises(ValueError, match="add_dataset"):
        Task(name="t", instruction="[TEXT:a] -> [TEXT:b]", train="a.jsonl")
    t = Task(name="t", instruction="[TEXT:a] -> [TEXT:b]")
    with pytest.raises(ValueError, match="unique"):
        Trainer().fit(GeneralistModel(), [t, t])
    with pytest.raises(ValueError, match="did you mean `grid`"):
        Trainer(image_tokenizer={"grids": 4})


def test_the_model_and_image_tokenizer_settings_reach_the_lowering():
    """As a task file's blocks do: an image target is written in the tokenizer's grid and codes,
    an image input is preprocessed at the model's image size."""
    t2i = Task(name="t2i", instruction="a drawing of [TEXT:text] -> [IMAGE:img,preprocess=image_vqgan]")
    trainer = Trainer(image_tokenizer={"grid": 4, "codes": 64, "image_size": 16})
    op = trainer._lowered(t2i, GeneralistModel()).programs[0].only("generate")
    assert op.get("min_len") == op.get("max_len") == 16
    pre = next(o for o in trainer._lowered(t2i, GeneralistModel()).programs[0].of_kind("preprocess")
               if o.name == "image_vqgan")
    assert (pre.get("grid"), pre.get("codes"), pre.get("size")) == (4, 64, 16)
    caption = Task(name="c", instruction="[IMAGE:img] what is it? -> [TEXT:cap]")
    pre = next(o for o in Trainer()._lowered(caption, GeneralistModel(image_size=64)).programs[0].of_kind("preprocess")
               if o.name == "image")
    assert pre.get("size") == 64
    assert Trainer()._lowered(caption, GeneralistModel()) is caption.ir  # nothing to change
