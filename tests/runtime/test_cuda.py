"""The accelerator path: uint8 batches pinned by the loader, normalized on the device."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import lower
from media import write_image
from ofac.runtime.data import TaskData, TaskPlan, open_source
from ofac.runtime.data.loader import build_loader
from ofac.runtime.execute import TaskRunner

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
