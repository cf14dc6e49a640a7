"""The accelerator path: uint8 batches pinned by the loader, normalized on the device."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import lower
from media import write_image

from ofac.runtime.data import TaskData, TaskPlan, open_source
from ofac.runtime.data.loader import build_loader
from ofac.runtime.exec.run import TaskRunner

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_device_normalization_equals_cpu(tmp_path, vocab):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", size=(40 + i, 30), box=(2, 2, 20, 20))
    rows = [{"img": f"{i}.png", "cap": "a red box"} for i in range(4)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = TaskData(TaskRunner(lower("[IMAGE:img,mask_ratio=0.5] what? -> [TEXT:cap]", "c"), vocab, "valid"),
                    [open_source(tmp_path / "d.jsonl")])
    gpu_loader, _ = build_loader([data], [TaskPlan("c", 4, 2)], updates=2, device="cuda")
    cpu_loader, _ = build_loader([data], [TaskPlan("c", 4, 2)], updates=2, device="cpu")
    for g, c in zip(gpu_loader, cpu_loader):
        assert g.batch.inputs["image_patch"].dtype == torch.uint8 and g.batch.inputs["image_patch"].is_pinned()
        on_gpu = g.batch.to("cuda").inputs["image_patch"]
        assert on_gpu.is_cuda and torch.allclose(on_gpu.cpu(), c.batch.inputs["image_patch"], atol=1e-6)


def test_training_on_cuda_with_bf16_autocast_learns(tmp_path):
    from test_trainer import make_task_file

    from ofac.runtime.train.recipe import TrainingRun

    compiled = make_task_file(tmp_path, steps=30)
    result = TrainingRun(compiled, tmp_path, device="cuda").fit()  # auto precision: bf16 on CUDA
    losses = [r["loss"] for r in result.history if "lr" in r]
    assert losses[-1] < 0.5 * losses[0]


def test_generation_on_cuda_matches_cpu(vocab):
    import numpy as np

    from ofac.runtime.data.collate import collate
    from ofac.runtime.generate.eager import GenerateConfig, generate
    from ofac.runtime.model.config import ModelConfig
    from ofac.runtime.model.network import EncoderDecoder

    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                        decoder_layers=2, heads=2, dropout=0.0)).eval()
    runner = TaskRunner(lower("[TEXT:s] -> [TEXT:t]"), vocab, "test")
    batch = collate([runner({"s": s}, np.random.default_rng(0)) for s in ("the quick brown fox", "a red circle")])
    cfg = GenerateConfig(beam=3, max_len=10)
    cpu = [[h.tokens for h in x] for x in generate(model, batch, cfg)]
    gpu = [[h.tokens for h in x] for x in generate(model.cuda(), batch.to("cuda"), cfg)]
    assert gpu == cpu
