"""`ofac export`: ONNX graphs that ONNX Runtime runs with the outputs of the PyTorch backend."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_trainer import make_task_file

from ofac.runtime.data.collate import collate
from ofac.runtime.serve.answer import OFASys
from ofac.runtime.serve.export import ExportError, export
from ofac.runtime.train.recipe import TrainingRun

pytestmark = pytest.mark.slow  # trains or exports for real: `pytest -m "not slow"` skips it

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    # the image task reads through the convolutional stem (GroupNorm and all) into the graph
    TrainingRun(make_task_file(root, steps=40, image_attrs=",adaptor=image_resnet"), root).fit()
    export(root / "run", root / "onnx")
    return root


def rows(root, name):
    return [json.loads(line) for line in (root / f"{name}_valid.jsonl").read_text().splitlines()]


def test_the_folder_holds_checked_graphs_and_a_manifest(exported):
    import onnx

    folder = exported / "onnx"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"encoder_image_resnet-text", "encoder_text", "decoder", "decoder_with_past"}
    assert manifest["encoders"] == {"caption": "encoder_image_resnet-text", "middle": "encoder_text"}
    for graph in manifest["graphs"].values():
        onnx.checker.check_model(onnx.load(str(folder / graph["file"])), full_check=True)
    for f in ("programs.json", "tokenizer.json", "config.json"):
        assert (folder / f).exists()


def _batches(system, task, data, media_rows, n=2):
    """The torch collate of the first rows, and the numpy collate of the same rows preprocessed
    by the numpy media preprocessors."""
    from ofac.runtime.data.sources import open_source
    from ofac.runtime.exec.run import TaskRunner
    from ofac.runtime.serve import onnx as engine

    source = open_source(media_rows, base_dir=data)
    out = []
    for media, pack in (("torch", lambda s: collate(s).to("cpu")), ("numpy", engine.collate)):
        runner = TaskRunner(system.task(task), system.vocab, "test", media=media)
        out.append(pack([runner(source.row(i), np.random.default_rng(0), source.base_dir) for i in range(n)]))
    return out


def test_encoder_and_step_logits_match_pytorch(exported):
    from ofac.runtime.serve import onnx as engine
    from ofac.runtime.serve.deployed import load

    torch_sys, onnx_sys = OFASys.from_pretrained(exported / "run"), load(exported / "onnx")
    batch, _ = _batches(torch_sys, "caption", exported, rows(exported, "cap"))
    same = engine.ArrayBatch(batch.tasks, {k: v.numpy() for k, v in batch.inputs.items()},
                             {k: v.numpy() for k, v in batch.lengths.items()}, batch.layout,
                             batch.head, batch.decoder.map(lambda t: t.numpy()), batch.meta)
    with torch.no_grad():
        mem_t, mask_t = torch_sys.backend.model.encode(batch)
        mem_o, mask_o = onnx_sys.backend.model.encode(same)
        np.testing.assert_allclose(mem_o, mem_t.numpy(), atol=1e-4, rtol=1e-4)
        assert (mask_o == mask_t.numpy()).all()
        cross_t, cross_o = torch_sys.backend.model.cross_cache(mem_t), onnx_sys.backend.model.cross_cache(mem_o)
        additive = torch.zeros(mask_t.shape).masked_fill(~mask_t, float("-inf"))
        tokens = torch.tensor([[0, 10, 20, 30], [0, 11, 12, 13]])
        lt, past_t = torch_sys.backend.model.decode_step(tokens[:, :2], 0, None, cross_t, additive, last=True)
        lo, past_o = onnx_sys.backend.model.decode_step(tokens[:, :2].numpy(), 0, None, cross_o, additive.numpy())
        np.testing.assert_allclose(lo, lt.numpy(), atol=1e-4, rtol=1e-4)
        for t in (2, 3):  # steps over the cache
            step = tokens[:, t:t + 1]
            lt, past_t = torch_sys.backend.model.decode_step(step, t, past_t, cross_t, additive, last=True)
            lo, past_o = onnx_sys.backend.model.decode_step(step.numpy(), t, past_o, cross_o, additive.numpy())
            np.testing.assert_allclose(lo, lt.numpy(), atol=1e-4, rtol=1e-4)


def test_numpy_preprocessing_matches_the_torch_data_path(exported):
    torch_sys = OFASys.from_pretrained(exported / "run")
    for task, name in (("caption", "cap"), ("middle", "txt")):
        t, n = _batches(torch_sys, task, exported, rows(exported, name), n=4)
        assert t.layout == n.layout and (n.decoder.inputs == t.decoder.inputs.numpy()).all()
        assert (n.decoder.prefix == t.decoder.prefix.numpy()).all()
        for adaptor, x in t.inputs.items():
            if x.dtype == torch.long:  # tokens: identical
                assert (n.inputs[adaptor] == x.numpy()).all()
                assert (n.lengths[adaptor] == t.lengths[adaptor].numpy()).all()
            else:  # pixels: Pillow and torchvision round a resize differently, by one level at most
                step = 1 / 255 / 0.5  # one uint8 level, normalized with std 0.5
                diff = np.abs(n.inputs[adaptor] - x.numpy())
                assert diff.max() <= step * 1.01 and (diff > 1e-6).mean() < 0.02
        assert [m["images"] for m in n.meta] == [m["images"] for m in t.meta]


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


def test_opset_18_for_other_runtimes_answers_the_same(exported):
    """Opset 18 (attention spelled out in MatMul/Softmax, for runtimes without the opset-23
    Attention op) answers like the PyTorch backend too.  Asked for by the task file's `export { }`
    block, which the run keeps: `ofac export RUN_DIR` without options follows it."""
    import shutil

    import onnx

    run = exported / "run18"
    shutil.copytree(exported / "run", run)
    config = json.loads((run / "config.json").read_text())
    config["export"] = {"opset": 18, "tasks": ["middle"], "out": "onnx18"}
    (run / "config.json").write_text(json.dumps(config))
    export(run)
    manifest = json.loads((run / "onnx18" / "manifest.json").read_text())
    assert manifest["opset"] == 18 and manifest["tasks"] == ["middle"]
    ops = {n.op_type for n in onnx.load(str(run / "onnx18" / "decoder_with_past.onnx")).graph.node}
    assert "Attention" not in ops and "Softmax" in ops
    torch_sys = OFASys.from_pretrained(exported / "run")
    onnx_sys = OFASys.from_pretrained(run / "onnx18", backend="onnx")
    data = [{"s": r["s"]} for r in rows(exported, "txt")]
    a = torch_sys.inference("middle", data, base_dir=exported, beam_size=2, batch_size=4)
    b = onnx_sys.inference("middle", data, base_dir=exported, beam_size=2, batch_size=4)
    assert [o.text for o in b] == [o.text for o in a]


def test_a_failed_export_writes_nothing(exported):
    before = sorted(p.name for p in (exported / "onnx").iterdir())
    with pytest.raises(ExportError, match="not empty"):
        export(exported / "run", exported / "onnx")
    assert sorted(p.name for p in (exported / "onnx").iterdir()) == before
    with pytest.raises(ExportError, match="no task 'nope'"):
        export(exported / "run", exported / "other", tasks=["nope"])
    assert not (exported / "other").exists()
    assert not [p for p in exported.iterdir() if p.name.startswith(".other")]


def test_attention_is_one_node_and_an_older_runtime_says_it_cannot_run_it(exported, monkeypatch):
    import onnx
    import onnxruntime

    from ofac.runtime.serve.deployed import load
    from ofac.runtime.store.files import CheckpointError

    manifest = json.loads((exported / "onnx" / "manifest.json").read_text())
    assert manifest["opset"] == 23
    step = onnx.load(str(exported / "onnx" / "decoder_with_past.onnx"))
    ops = [n.op_type for n in step.graph.node]
    assert ops.count("Attention") == 2 * manifest["layers"] and "Softmax" not in ops
    monkeypatch.setattr(onnxruntime, "__version__", "1.22.1")
    with pytest.raises(CheckpointError) as err:
        load(exported / "onnx")
    assert err.value.diagnostic.code == "E0120" and "--opset 18" in err.value.diagnostic.help


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


BLOCK_TORCH = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "torchaudio"):
            raise ImportError(name + " is blocked in this process")
sys.meta_path.insert(0, Blocked())
"""

ANSWER = BLOCK_TORCH + """
import json
import ofac
model = ofac.load(sys.argv[1])
rows, base, beam = json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out = {task: [[o.text, o.score, [h.text for h in o.n_best]] for o in model.inference(task, r, base_dir=base,
                                                                                      beam_size=beam)]
       for task, r in rows.items()}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "torchaudio"))
print(json.dumps({"answers": out, "torch_modules": loaded, "backend": type(model.backend).__name__}))
"""


@pytest.mark.parametrize("beam", [1, 4])
def test_the_export_answers_in_a_process_without_torch(exported, beam):
    import subprocess
    import sys

    data = {task: [{k: v for k, v in r.items() if k in ("img", "s")} for r in rows(exported, name)]
            for task, name in (("caption", "cap"), ("middle", "txt"))}
    proc = subprocess.run([sys.executable, "-c", ANSWER, str(exported / "onnx"), json.dumps(data), str(exported),
                           str(beam)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["torch_modules"] == [] and got["backend"] == "OnnxBackend"
    torch_sys = OFASys.from_pretrained(exported / "run")
    for task, r in data.items():
        expected = torch_sys.inference(task, r, base_dir=exported, beam_size=beam)
        answers = got["answers"][task]
        assert [a[0] for a in answers] == [o.text for o in expected], task
        assert [a[2] for a in answers] == [[h.text for h in o.n_best] for o in expected], task
        assert np.allclose([a[1] for a in answers], [o.score for o in expected], atol=1e-4)


def test_the_cli_answers_with_the_export_without_torch(exported):
    import subprocess
    import sys

    row = rows(exported, "txt")[0]
    cli = BLOCK_TORCH + "from ofac.cli import main\nsys.argv[0] = 'ofac'\nmain()\n"
    proc = subprocess.run([sys.executable, "-c", cli, "infer", str(exported / "onnx"), "-t", "middle", "-d",
                           f"s={row['s']}", "--backend", "onnx", "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = OFASys.from_pretrained(exported / "run").inference("middle", {"s": row["s"]})
    assert json.loads(proc.stdout)["text"] == expected.text
