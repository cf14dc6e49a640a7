"""Reused batch memory (runtime/buffers.py): worker slots handed to the main process and
recycled normalization outputs must never be written while anything still refers to them."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import lower

from ofac.runtime.data import TaskData, TaskPlan, buffers, open_source
from ofac.runtime.data.collate import normalize
from ofac.runtime.data.loader import build_loader
from ofac.runtime.exec.run import TaskRunner

pytestmark = pytest.mark.skipif(not buffers.ENABLED, reason="buffer reuse is Linux-only (plain allocation elsewhere)")


def test_a_slot_goes_back_to_its_worker_only_once_the_main_process_lets_go():
    slots, registry = buffers._WorkerSlots(), buffers._Registry()
    a = slots.take((4, 100), torch.float32)
    a.fill_(1.0)
    first = slots.reference(a)
    assert first.storage is not None  # the descriptor travels with the slot's first batch
    address = a.data_ptr()
    del a
    assert slots.take((4, 100), torch.float32).data_ptr() != address  # still with the main process
    seen = registry.view(first)
    assert seen.data_ptr() == address and bool((seen == 1.0).all())
    registry.release_idle()
    assert slots.slots[first.index].state[0] == 1  # `seen` is alive
    kept = seen[1:]  # a view keeps the slot too
    del seen
    registry.release_idle()
    assert slots.slots[first.index].state[0] == 1
    del kept
    registry.release_idle()
    assert slots.slots[first.index].state[0] == 0

    again = slots.take((4, 90), torch.float32)  # smaller fits the same slot
    assert again.data_ptr() == address
    second = slots.reference(again)
    assert second.storage is None and second.index == first.index  # named by reference now
    del again
    registry.release_idle()  # filled by the worker, not yet received: must stay the worker's
    assert slots.slots[first.index].state[0] == 1


def test_a_worker_with_every_slot_lent_falls_back_to_one_off_memory():
    slots = buffers._WorkerSlots()
    held = [slots.take((1000,), torch.uint8) for _ in range(buffers.SLOTS_PER_WORKER)]
    extra = slots.take((1000,), torch.uint8)
    assert len(slots.slots) == buffers.SLOTS_PER_WORKER and slots.reference(extra) is None
    assert extra.is_shared() and extra.data_ptr() not in {t.data_ptr() for t in held}


def test_recycled_outputs_are_never_handed_out_while_referenced():
    recycler = buffers.Recycler(keep=3)
    a = recycler.empty((3, 5), torch.float32)
    b = recycler.empty((3, 5), torch.float32)
    assert a.data_ptr() != b.data_ptr()
    address = a.data_ptr()
    row = a[0]
    del a
    assert recycler.empty((3, 5), torch.float32).data_ptr() != address  # a view of it lives
    del row
    assert recycler.empty((3, 5), torch.float32).data_ptr() == address


def test_a_normalized_batch_saved_for_backward_is_not_overwritten():
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    mean, std, border = torch.full((2, 3), 0.5), torch.full((2, 3), 0.5), torch.zeros(2, dtype=torch.long)
    w = torch.ones(2, 3, 8, 8, requires_grad=True)
    first = normalize(x, mean, std, border)
    expected = first.clone()
    loss = (w * first).sum()  # autograd keeps `first` for the gradient of w
    del first
    other = normalize(torch.zeros_like(x), mean, std, border)  # must not reuse that block
    loss.backward()
    assert torch.equal(w.grad, expected) and bool((other == -1.0).all())


def _image_task(tmp_path, vocab, n):
    from media import write_image

    rows = []
    for i in range(n):
        write_image(tmp_path / f"i{i}.png", size=(40 + i, 30), color=(10 * i % 255, 40, 200), box=(2, 2, 10 + i, 20))
        rows.append({"img": f"i{i}.png", "t": f"picture {i}"})
    (tmp_path / "img.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner = TaskRunner(lower("[IMAGE:img] describe -> [TEXT:t]", "pic", image_size=64), vocab, "valid")
    return TaskData(runner, [open_source(tmp_path / "img.jsonl")])


@pytest.mark.parametrize("hold", ["recent", "all"])
def test_worker_batches_stay_intact_however_long_they_are_held(tmp_path, vocab, hold):
    """8 images of 64x64 (98 KB: through the slots).  'recent': the training pattern, a batch
    dropped after use, so slots cycle; 'all': every batch kept, more than a worker has slots,
    so the workers fall back to one-off memory.  Either way every batch equals the one built
    in the main process."""
    data = _image_task(tmp_path, vocab, 24)
    updates = 2 * buffers.SLOTS_PER_WORKER + 6

    def run(workers):
        loader, _ = build_loader([data], [TaskPlan("pic", 24, 8)], num_workers=workers, updates=updates, seed=5)
        return loader

    expected = [b.batch.to("cpu").inputs["image_patch"] for b in run(0)]
    kept, pids = [], set()
    for i, mb in enumerate(run(2)):
        assert mb.batch.inputs["image_patch"].dtype == torch.uint8
        if hold == "all":
            kept.append((i, mb.batch))
        else:
            assert torch.equal(mb.batch.to("cpu").inputs["image_patch"], expected[i])
            if i % 7 == 0:  # a few raw batches held to the end
                kept.append((i, mb.batch))
        pids |= {pid for pid, _ in buffers._registry.slots}
    for i, batch in kept:
        assert torch.equal(batch.to("cpu").inputs["image_patch"], expected[i]), f"batch {i} was overwritten"
    if hold == "recent":  # slots were reused: far fewer than batches
        assert len(buffers._registry.slots) < updates // 2

    # the next iterator's workers register their slots; the exited workers' slots are forgotten
    next(iter(run(2)))
    assert not pids & {pid for pid, _ in buffers._registry.slots}
