"""`ofac export`: ONNX graphs that ONNX Runtime runs with the outputs of the PyTorch backend."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ofac.runtime.collate import collate
from ofac.runtime.export import ExportError, export
from ofac.runtime.inference import OFASys
from ofac.runtime.trainer import Trainer
from test_trainer import make_task_file


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    Trainer(make_task_file(root, steps=40), root).fit()
    export(root / "run", root / "onnx")
    return root


def rows(root, name):
    return [json.loads(line) for line in (root / f"{name}_valid.jsonl").read_text().splitlines()]


def test_the_folder_holds_checked_graphs_and_a_manifest(exported):
    import onnx

    folder = exported / "onnx"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"encoder_image_patch-text", "encoder_text", "decoder", "decoder_with_past"}
    assert manifest["encoders"] == {"caption": "encoder_image_patch-text", "middle": "encoder_text"}
    for graph in manifest["graphs"].values():
        onnx.checker.check_model(onnx.load(str(folder / graph["file"])), full_check=True)
    for f in ("programs.json", "tokenizer.json", "config.json"):
        assert (folder / f).exists()


def test_encoder_and_step_logits_match_pytorch(exported):
    torch_sys = OFASys.from_pretrained(exported / "run")
    onnx_sys = OFASys.from_pretrained(exported / "onnx", backend="onnx")
    task = torch_sys.task("caption")
    from ofac.runtime.data.dataset import TaskData
    from ofac.runtime.data.sources import open_source
    from ofac.runtime.execute import TaskRunner

    data = TaskData(TaskRunner(task, torch_sys.vocab, "test"), [open_source(rows(exported, "cap"), base_dir=exported)])
    batch = collate([data.sample(i, np.random.default_rng(0)) for i in range(1)]).to("cpu")
    with torch.no_grad():
        mem_t, mask_t = torch_sys.model.encode(batch)
        mem_o, mask_o = onnx_sys.model.encode(batch)
        torch.testing.assert_close(mem_o, mem_t, atol=1e-4, rtol=1e-4)
        cross_t, cross_o = torch_sys.model.cross_cache(mem_t), onnx_sys.model.cross_cache(mem_o)
        additive = torch.zeros(mask_t.shape).masked_fill(~mask_t, float("-inf"))
        tokens = torch.tensor([[0, 10, 20, 30]])
        lt, past_t = torch_sys.model.decode_step(tokens[:, :2], 0, None, cross_t, additive, last=True)
        lo, past_o = onnx_sys.model.decode_step(tokens[:, :2], 0, None, cross_o, additive)
        torch.testing.assert_close(lo, lt, atol=1e-4, rtol=1e-4)
        for t in (2, 3):  # steps over the cache
            lt, past_t = torch_sys.model.decode_step(tokens[:, t:t + 1], t, past_t, cross_t, additive, last=True)
            lo, past_o = onnx_sys.model.decode_step(tokens[:, t:t + 1], t, past_o, cross_o, additive)
            torch.testing.assert_close(lo, lt, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("beam", [1, 4])
def test_both_backends_answer_the_same_tokens(exported, beam):
    torch_sys = OFASys.from_pretrained(exported / "run")
    onnx_sys = OFASys.from_pretrained(exported / "onnx", backend="onnx")
    for task, name in (("caption", "cap"), ("middle", "txt")):
        data = [{k: v for k, v in r.items() if k in ("img", "s")} for r in rows(exported, name)]
        for batch_size in (1, 4):
            a = torch_sys.inference(task, data, base_dir=exported, beam_size=beam, batch_size=batch_size)
            b = onnx_sys.inference(task, data, base_dir=exported, beam_size=beam, batch_size=batch_size)
            assert [o.text for o in b] == [o.text for o in a], (task, batch_size)
            assert [[h.text for h in o.n_best] for o in b] == [[h.text for h in o.n_best] for o in a]
            assert np.allclose([o.score for o in b], [o.score for o in a], atol=1e-4)


def test_a_failed_export_writes_nothing(exported):
    before = sorted(p.name for p in (exported / "onnx").iterdir())
    with pytest.raises(ExportError, match="not empty"):
        export(exported / "run", exported / "onnx")
    assert sorted(p.name for p in (exported / "onnx").iterdir()) == before
    with pytest.raises(ExportError, match="no task 'nope'"):
        export(exported / "run", exported / "other", tasks=["nope"])
    assert not (exported / "other").exists()
    assert not [p for p in exported.iterdir() if p.name.startswith(".other")]


def test_cli_export_and_infer_with_the_onnx_backend(exported, tmp_path):
    from typer.testing import CliRunner

    from ofac.cli import app

    cli = CliRunner()
    result = cli.invoke(app, ["export", str(exported / "run"), "--out", str(tmp_path / "x"), "--task", "middle"])
    assert result.exit_code == 0, result.output
    assert "decoder_with_past.onnx" in result.stdout
    row = rows(exported, "txt")[0]
    args = ["infer", str(tmp_path / "x"), "-t", "middle", "-d", f"s={row['s']}"]
    onnx_out = cli.invoke(app, args + ["--backend", "onnx"])
    torch_out = cli.invoke(app, ["infer", str(exported / "run"), "-t", "middle", "-d", f"s={row['s']}"])
    assert onnx_out.exit_code == 0 and onnx_out.stdout == torch_out.stdout
    missing = cli.invoke(app, ["infer", str(tmp_path / "x"), "-t", "caption", "-d", "img=x.png", "--backend", "onnx"])
    assert missing.exit_code == 1 and "no exported encoder" in missing.stderr
