"""The trainer: learning on held-out rows, exact resume, run-directory safety."""
from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from media import write_image
from safetensors.torch import load_file

from ofac import compile_source
from ofac.runtime.model.heads.tokens import token_losses
from ofac.runtime.store.checkpoint import CheckpointError
from ofac.runtime.train.recipe import TrainingRun

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (230, 210, 30)}
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def make_task_file(tmp_path, steps=60, extra_train="", image_attrs="", **settings):
    (tmp_path / "img").mkdir(exist_ok=True)
    rows = []
    for i in range(40):
        colour = list(COLOURS)[i % 4]
        write_image(tmp_path / "img" / f"{i}.png", size=(32, 32), color=COLOURS[colour], box=(0, 0, 31, 31))
        rows.append({"img": f"img/{i}.png", "cap": f"a {colour} square"})
    text = [{"s": " ".join(WORDS[j % 10] for j in range(i, i + 3)), "t": WORDS[(i + 1) % 10]} for i in range(40)]
    for name, data in (("cap", rows), ("txt", text)):
        (tmp_path / f"{name}_train.jsonl").write_text("\n".join(json.dumps(r) for r in data[:32]) + "\n")
        (tmp_path / f"{name}_valid.jsonl").write_text("\n".join(json.dumps(r) for r in data[32:]) + "\n")
    source = f"""
task caption {{
    instruction: [IMAGE:img{image_attrs}] what does the image describe? -> [TEXT:cap]
    train = cap_train.jsonl
    valid = cap_valid.jsonl
    micro_batch_size = 8
}}
task middle {{
    instruction: which word is in the middle of " [TEXT:s] "? -> [TEXT:t]
    train = txt_train.jsonl
    valid = txt_valid.jsonl
    micro_batch_size = 8
}}
model {{ d_model = 64  ffn_dim = 128  encoder_layers = 2  decoder_layers = 2  heads = 4  image_size = 32
         patch_size = 8  vocab_size = 300  dropout = 0.1 }}
train {{ steps = {steps}  lr = 3e-3  warmup = 5  eval_every = 1000  save_every = 4  out = run  seed = 3 {extra_train} }}
"""
    for key, value in settings.items():  # replace a train setting's value
        source = re.sub(rf"{key} = \S+", f"{key} = {value}", source)
    (tmp_path / "t.ofa").write_text(source)
    compiled, diags = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    return compiled


def test_two_tasks_improve_on_held_out_rows(tmp_path):
    compiled = make_task_file(tmp_path, steps=60)
    trainer = TrainingRun(compiled, tmp_path)
    result = trainer.fit()
    assert result.step == 60 and not result.interrupted
    steps = [r for r in result.history if "loss" in r]
    assert steps[-1]["loss"] < 0.5 * steps[0]["loss"]
    final = [r for r in result.history if "valid" in r][-1]["valid"]
    # an untrained model of the same seed, on the same held-out rows
    fresh = TrainingRun(compiled, tmp_path, out=tmp_path / "fresh", steps=1)
    from ofac.runtime.data.tasks import task_data
    from ofac.runtime.model.config import ModelConfig
    from ofac.runtime.model.network import EncoderDecoder
    from ofac.runtime.vocab.tokenizer import Vocab

    vocab = Vocab.load(tmp_path / "run" / "tokenizer.json")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    torch.manual_seed(3)
    untrained = EncoderDecoder(ModelConfig.from_dict(cfg))
    before = fresh.validation(untrained, task_data(compiled, "valid", vocab))
    for task in ("caption", "middle"):
        assert final[task]["loss"] < before[task]["loss"] - 1.0, task
        assert final[task]["token_accuracy"] > before[task]["token_accuracy"] + 0.3, task
    assert final["caption"]["token_accuracy"] == 1.0  # colour captions on unseen images
    assert final["caption"]["exact_match"] == 1.0 and before["caption"]["exact_match"] == 0.0  # decoded
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").exists()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 61 and json.loads(lines[-1])["valid"]
    from typer.testing import CliRunner

    from ofac.cli import app

    result = CliRunner().invoke(app, ["plot", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "run" / "plots").glob("*.png"))
    assert pngs == ["train.png", "valid_caption.png", "valid_middle.png"]
    assert all((tmp_path / "run" / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert CliRunner().invoke(app, ["plot", str(tmp_path)]).exit_code == 1  # not a run directory


@pytest.mark.parametrize("ema", ["", "ema = 0.9"])
def test_interrupt_and_resume_equal_the_uninterrupted_run(tmp_path, ema):
    whole_dir, split_dir = tmp_path / "whole", tmp_path / "split"
    whole_dir.mkdir(), split_dir.mkdir()
    TrainingRun(make_task_file(whole_dir, steps=12, extra_train=ema), whole_dir).fit()
    compiled = make_task_file(split_dir, steps=12, extra_train=ema)

    def kill_at_6(msg):
        if msg.startswith("step 6/"):
            raise KeyboardInterrupt

    first = TrainingRun(compiled, split_dir, log=kill_at_6).fit()
    assert first.interrupted and first.step == 6
    resumed = TrainingRun(compiled, split_dir, resume=True).fit()
    assert resumed.step == 12
    a = load_file(str(whole_dir / "run" / "checkpoints" / "step-00000012" / "model.safetensors"))
    b = load_file(str(split_dir / "run" / "checkpoints" / "step-00000012" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise, on CPU
    if ema:
        ea = load_file(str(whole_dir / "run" / "checkpoints" / "step-00000012" / "ema.safetensors"))
        eb = load_file(str(split_dir / "run" / "checkpoints" / "step-00000012" / "ema.safetensors"))
        assert all(torch.equal(ea[k], eb[k]) for k in ea)
        key = next(k for k in a if a[k].dim() == 2 and k in ea)
        assert not torch.equal(ea[key], a[key])  # the average lags the weights
    def losses(run):
        return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]

    assert losses(whole_dir / "run") == losses(split_dir / "run") and len(losses(whole_dir / "run")) == 12


def test_loss_mean_tasks_gives_every_task_its_mean_token_loss(tmp_path, monkeypatch):
    # caption in two micro-batches of 4 (update_freq 2), middle in one of 8: under `loss_mean =
    # tasks` the update's gradient is that of mean(caption's token mean, middle's token mean)
    make_task_file(tmp_path, steps=1, dropout="0.0", extra_train="loss_mean = tasks  clip_norm = 0  precision = fp32")
    source = (tmp_path / "t.ofa").read_text().replace("micro_batch_size = 8",
                                                      "micro_batch_size = 4  update_freq = 2", 1)
    compiled, _ = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    from ofac.runtime.train import update

    seen = {}
    backward, adamw_step = update.backward, torch.optim.AdamW.step

    def spy_backward(par, model, pending, losses, *args):
        seen["model"], seen["pending"], seen["losses"] = copy.deepcopy(model), list(pending), losses
        seen["params"] = dict(model.named_parameters())
        return backward(par, model, pending, losses, *args)

    def spy_step(opt, *args, **kwargs):
        seen["grads"] = {k: p.grad.clone() for k, p in seen["params"].items() if p.grad is not None}
        return adamw_step(opt, *args, **kwargs)

    monkeypatch.setattr(update, "backward", spy_backward)
    monkeypatch.setattr(torch.optim.AdamW, "step", spy_step)
    TrainingRun(compiled, tmp_path).fit()
    assert [task for task, _ in seen["pending"]] == ["caption", "caption", "middle"]
    model, sums, counts = seen["model"], {}, {}
    for task, batch in seen["pending"]:
        batch = batch.to("cpu")  # pixels arrive as uint8; to() normalizes them, as the trainer does
        d = batch.decoder
        loss, _ = token_losses(model(batch), d.target, d.loss_mask, seen["losses"][task].attrs["eps"])
        sums[task] = sums.get(task, 0) + loss.sum()
        counts[task] = counts.get(task, 0) + int(d.loss_mask.sum())
    assert counts["caption"] != counts["middle"]  # unequal targets, equal weight
    expected = sum(sums[t] / counts[t] for t in sums) / len(sums)
    expected.backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(seen["grads"][name], p.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_the_run_keeps_the_export_block_and_refuses_unbuilt_model_settings(tmp_path):
    make_task_file(tmp_path, steps=1)
    source = (tmp_path / "t.ofa").read_text() + "export {\n    opset = 18\n    tasks = [middle]\n}\n"
    compiled, _ = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    TrainingRun(compiled, tmp_path).fit()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["export"]
    assert saved == {"opset": 18, "tasks": ["middle"], "out": "onnx"}
    from ofac.runtime.errors import NotSupportedYet

    rotary, _ = compile_source(source.replace("heads = 4", "heads = 4  positions = rotary"), str(tmp_path / "t.ofa"),
                               tmp_path)
    with pytest.raises(NotSupportedYet, match="positions = rotary"):
        TrainingRun(rotary, tmp_path, out=tmp_path / "rotary").fit()
    assert not (tmp_path / "rotary").exists()


def test_run_directory_is_never_overwritten(tmp_path):
    compiled = make_task_file(tmp_path, steps=4)
    TrainingRun(compiled, tmp_path).fit()
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError) as err:
        TrainingRun(compiled, tmp_path).fit()
    assert err.value.diagnostic.code == "E0117"
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before
    other = make_task_file(tmp_path / "o", steps=4) if (tmp_path / "o").mkdir() is None else None
    source = (tmp_path / "t.ofa").read_text().replace("d_model = 64", "d_model = 32")
    changed, _ = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    with pytest.raises(CheckpointError, match="another configuration"):
        TrainingRun(changed, tmp_path, resume=True).fit()
    with pytest.raises(CheckpointError, match="nothing to resume"):
        TrainingRun(other, tmp_path / "o", resume=True).fit()


def test_corrupt_checkpoint_is_a_diagnostic(tmp_path):
    compiled = make_task_file(tmp_path, steps=4)
    TrainingRun(compiled, tmp_path).fit()
    (tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as err:
        TrainingRun(compiled, tmp_path, resume=True, steps=8).fit()
    assert err.value.diagnostic.code == "E0113" and "unreadable weights" in str(err.value)


def test_cli_run(tmp_path):
    from typer.testing import CliRunner

    from ofac.cli import app

    make_task_file(tmp_path, steps=3)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "t.ofa"), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "finished step 3" in result.stderr and (tmp_path / "cli" / "checkpoints" / "latest").exists()
    result = CliRunner().invoke(app, ["run", str(tmp_path / "t.ofa"), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 1 and "E0117" in result.stderr


def test_early_stopping(tmp_path):
    compiled = make_task_file(tmp_path, steps=200, extra_train="patience = 2", eval_every=2, lr=0.0)
    result = TrainingRun(compiled, tmp_path).fit()
    scores = [r["score"] for r in result.history if "score" in r]
    assert result.step == 6 and len(scores) == 3  # lr 0: nothing improves after the first validation
    assert (tmp_path / "run" / "checkpoints" / "step-00000006").exists()


def test_display_falls_back_to_lines_off_a_terminal():
    import io

    from rich.console import Console

    from ofac.runtime.train.display import TrainDisplay

    buf = io.StringIO()
    display = TrainDisplay(Console(file=buf, force_terminal=False, width=120), 40, {"cap": "cider"})
    for step in range(1, 41):
        display({"step": step, "lr": 1e-3, "loss": 2.0, "tokens_per_s": 100.0, "tasks": {"cap": 1.5},
                 "task_tokens_per_s": {"cap": 100.0}})
    display({"step": 40, "valid": {"cap": {"loss": 1.0, "cider": 0.7}}})
    display.close()
    lines = buf.getvalue().splitlines()
    assert display.live is None and len(lines) == 21  # every 2 steps, and the validation
    assert lines[-1] == "step 40: cap cider 0.700" and lines[-2].startswith("step 40/40 loss 2.000")


def test_too_small_dataset_and_unknown_device_are_diagnostics(tmp_path):
    from typer.testing import CliRunner

    from ofac.cli import app

    make_task_file(tmp_path, steps=2)
    source = (tmp_path / "t.ofa").read_text().replace("micro_batch_size = 8", "micro_batch_size = 64", 1)
    (tmp_path / "t.ofa").write_text(source)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "t.ofa"), "--out", str(tmp_path / "a")])
    assert result.exit_code == 1 and "error[E0105]" in result.stderr and "micro_batch_size" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "a").exists()  # a failed start writes nothing
    if not torch.cuda.is_available():
        result = CliRunner().invoke(app, ["run", str(tmp_path / "t.ofa"), "--device", "cuda", "--out",
                                          str(tmp_path / "b")])
        assert result.exit_code == 1 and "error[E0100]" in result.stderr and not (tmp_path / "b").exists()


def test_bf16_autocast_follows_the_fp32_loss_curve(tmp_path):
    """The default precision on bf16 hardware must learn like fp32: same curve, same result."""
    compiled = make_task_file(tmp_path, steps=40)
    curves, valid = {}, {}
    for precision in ("fp32", "bf16"):
        result = TrainingRun(compiled, tmp_path, out=tmp_path / precision, precision=precision).fit()
        curves[precision] = [r["loss"] for r in result.history if "lr" in r]
        valid[precision] = [r for r in result.history if "valid" in r][-1]["valid"]
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert bf16[-1] < 0.3 * bf16[0]  # it learns
    assert bf16 == pytest.approx(fp32, rel=0.03)  # step by step, within bf16 rounding
    for task in ("caption", "middle"):
        assert valid["bf16"][task]["loss"] == pytest.approx(valid["fp32"][task]["loss"], rel=0.05)
        assert valid["bf16"][task]["exact_match"] == valid["fp32"][task]["exact_match"]


def test_detection_and_text_to_sql_tasks_are_scored_by_map_and_execution(tmp_path):
    (tmp_path / "img").mkdir()
    det = []
    for i in range(12):
        colour = list(COLOURS)[i % 4]
        write_image(tmp_path / "img" / f"{i}.png", size=(32, 32), color=COLOURS[colour], box=(4, 4, 20, 20))
        det.append({"img": f"img/{i}.png", "boxes": [[4, 4, 20, 20]], "labels": [colour]})
    db = {"db_id": "zoo", "tables": {"animal": {"name": ["lion", "bear"], "age": [3, 1]}}}
    sql = [{"db": db, "q": f"animals older than {i % 3}", "sql": f"SELECT name FROM animal WHERE age > {i % 3}"}
           for i in range(12)]
    for name, rows in (("det", det), ("sql", sql)):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    source = """
task detect {
    instruction: [IMAGE:img] what are the objects in the image? -> ( [BOX:boxes] [TEXT:labels] )*
    train = det.jsonl
    valid = det.jsonl
    micro_batch_size = 4
}
task spider {
    instruction: [STRUCT:db,preprocess=database,max_length=64] [TEXT:q] -> [TEXT:sql]
    train = sql.jsonl
    valid = sql.jsonl
    micro_batch_size = 4
    metric = sql_execution
}
model { d_model = 64  ffn_dim = 128  encoder_layers = 2  decoder_layers = 2  heads = 4  image_size = 32  patch_size = 8
        vocab_size = 300  box_bins = 32  dropout = 0.0 }
train { steps = 150  lr = 3e-3  warmup = 5  eval_every = 150  save_every = 150  out = run }
"""
    compiled, diags = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    valid = [r for r in TrainingRun(compiled, tmp_path).fit().history if "valid" in r][-1]["valid"]
    # the rows are memorized: each task's own metric says so (an untrained model scores 0 on both)
    assert valid["detect"]["map"] > 0.5 and valid["spider"]["sql_execution"] == 1.0


def test_sql_execution_without_a_database_fails_the_start(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "how many", "sql": "SELECT 1"}\n' * 4)
    source = """
task t {
    instruction: [TEXT:q] -> [TEXT:sql]
    train = d.jsonl  valid = d.jsonl  micro_batch_size = 2  metric = sql_execution
}
model { d_model = 32  ffn_dim = 64  encoder_layers = 1  decoder_layers = 1  heads = 2  vocab_size = 300 }
train { steps = 2  out = run }
"""
    compiled, _ = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    from ofac.runtime.errors import NotSupportedYet

    with pytest.raises(NotSupportedYet, match="sql_execution"):
        TrainingRun(compiled, tmp_path).fit()
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing


def test_ofac_max_steps_caps_a_run_and_says_so(tmp_path, monkeypatch):
    from ofac.runtime.errors import DataError

    compiled = make_task_file(tmp_path, steps=60)
    monkeypatch.setenv("OFAC_MAX_STEPS", "3")
    said = []
    result = TrainingRun(compiled, tmp_path, log=said.append).fit()
    assert result.step == 3 and "OFAC_MAX_STEPS caps this run at 3 steps" in said
    assert [r for r in result.history if "valid" in r]  # the last (capped) step validates
    monkeypatch.setenv("OFAC_MAX_STEPS", "three")
    with pytest.raises(DataError) as err:
        TrainingRun(compiled, tmp_path, out=tmp_path / "other").fit()
    assert err.value.diagnostic.code == "E0121" and not (tmp_path / "other").exists()
