"""Multi-task mixing: policies, exact resume, skipped-row accounting, worker loading."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import lower

from ofac.runtime.data import MultiTaskDataset, TaskData, TaskPlan, open_source
from ofac.runtime.data.collate import collate
from ofac.runtime.data.loader import build_loader
from ofac.runtime.data.mixing import Mixer
from ofac.runtime.evaluate.scorer import closed_set
from ofac.runtime.exec.run import TaskRunner


def plans(sizes=(10, 7, 23), batch=(2, 3, 4), freq=(1, 2, 1), weights=(1.0, 3.0, 1.0)):
    return [TaskPlan(f"t{i}", n, b, f, w) for i, (n, b, f, w) in enumerate(zip(sizes, batch, freq, weights))]


def draw(mixer, updates):
    return [[(mb.task, mb.keys) for mb in mixer.next_update()] for _ in range(updates)]


@pytest.mark.parametrize("policy", ["all", "weighted", "temperature"])
def test_resume_draws_exactly_the_uninterrupted_batches(policy):
    whole = draw(Mixer(plans(), policy, seed=3), 40)
    first = Mixer(plans(), policy, seed=3)
    head = draw(first, 17)
    state = json.loads(json.dumps(first.state_dict()))  # survives serialization
    resumed = Mixer(plans(), policy, seed=3)
    resumed.load_state_dict(state)
    assert head + draw(resumed, 23) == whole


def test_all_policy_visits_every_task_each_update_with_update_freq():
    for update in draw(Mixer(plans(), "all"), 5):
        assert [t for t, _ in update] == [0, 1, 1, 2]


def test_weighted_and_temperature_follow_their_distributions():
    counts = np.bincount([u[0][0] for u in draw(Mixer(plans(), "weighted", seed=1), 3000)], minlength=3)
    assert np.allclose(counts / counts.sum(), [0.2, 0.6, 0.2], atol=0.03)
    m = Mixer(plans(), "temperature", temperature=1.0)
    assert np.allclose(m.probs, np.array([10, 7, 23]) / 40)


def test_every_row_once_per_epoch_and_ranks_are_disjoint():
    p = [TaskPlan("a", 12, 2)]
    ranks = [Mixer(p, seed=5, rank=r, world=2) for r in range(2)]
    rows = [[k[1] for u in draw(m, 3) for _, keys in u for k in keys] for m in ranks]
    assert not set(rows[0]) & set(rows[1]) and sorted(rows[0] + rows[1]) == list(range(12))
    second_epoch = [k for u in draw(ranks[0], 3) for _, keys in u for k in keys]
    assert {k[2] for k in second_epoch} == {1}


def test_length_bucketing_groups_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 1000, size=400)
    bucketed = Mixer([TaskPlan("a", 400, 8, lengths=lengths)], bucket_window=50)
    plain = Mixer([TaskPlan("a", 400, 8)])

    def spread(m):
        return np.mean([np.ptp(lengths[[k[1] for k in keys]]) for u in draw(m, 50) for _, keys in u])

    assert spread(bucketed) < spread(plain) / 5


def test_too_small_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one micro-batch"):
        Mixer([TaskPlan("tiny", 3, 4)])


def _task(tmp_path, vocab, rows, on_error="fail"):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner = TaskRunner(lower("summarize: [TEXT:s] -> [TEXT:t]", "sum"), vocab, "train")
    return TaskData(runner, [open_source(tmp_path / "d.jsonl")], on_error)


def test_skip_policy_counts_bad_rows(tmp_path, vocab):
    rows = [{"s": f"row {i}", "t": "yes"} for i in range(6)]
    rows[2] = {"s": "no target"}
    data = _task(tmp_path, vocab, rows, on_error="skip")
    loader, _ = build_loader([data], [TaskPlan("sum", 6, 3)], updates=2)
    batches = list(loader)
    skipped = [s for b in batches for s in b.skipped]
    assert len(skipped) == 1 and skipped[0].row == 3 and "missing column `t`" in skipped[0].message
    assert sum(len(b.batch) for b in batches) == 5
    failing = _task(tmp_path, vocab, rows)
    loader, _ = build_loader([failing], [TaskPlan("sum", 6, 3)], updates=2)
    with pytest.raises(Exception, match="missing column `t`"):
        list(loader)


def test_an_unreadable_line_is_skipped_by_every_reader_of_all_rows(tmp_path, vocab):
    """The closed-set answers and the corpus read every training row: under `on_error = skip`
    a broken JSON line drops out of them as it does out of the batches; otherwise it fails."""
    from ofac.runtime.data.corpus import corpus
    from ofac.runtime.errors import DataError

    (tmp_path / "d.jsonl").write_text('{"s": "a", "t": "yes"}\n{"s": broken\n{"s": "b", "t": "no"}\n')
    runner = TaskRunner(lower("summarize: [TEXT:s] -> [TEXT:t,closed_set]", "sum"), vocab, "train")
    data = TaskData(runner, [open_source(tmp_path / "d.jsonl")], "skip")
    assert data.readable(1) is None and data.readable(2) == {"s": "b", "t": "no"}
    assert closed_set(runner.task, data) == ["no", "yes"]
    texts, _ = corpus([runner.task], [data])
    assert "a" in texts and "b" in texts
    data.on_error = "fail"
    with pytest.raises(DataError, match="JSON"):
        data.readable(1)


def test_two_workers_give_the_same_batches_as_none(tmp_path, vocab):
    rows = [{"s": f"the quick fox number {i}", "t": "yes" if i % 2 else "no"} for i in range(20)]
    data = _task(tmp_path, vocab, rows)

    def run(workers):
        loader, _ = build_loader([data], [TaskPlan("sum", 20, 4)], num_workers=workers, updates=6, seed=9)
        return [(b.update, b.batch.decoder.inputs.tolist(), b.batch.inputs["text"].tolist()) for b in loader]

    assert run(0) == run(2)


def test_image_batches_from_workers_match_the_main_process(tmp_path, vocab):
    """Workers hand over uint8 pixels (and small tensors inside the pickle); `to()` then
    normalizes them exactly as a batch built in the main process."""
    import torch
    from media import write_image

    rows = []
    for i in range(8):
        write_image(tmp_path / f"i{i}.png", size=(40 + 3 * i, 30), box=(2, 2, 20 + i, 20))
        rows.append({"img": f"i{i}.png", "t": f"picture {i}"})
    (tmp_path / "img.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner = TaskRunner(lower("[IMAGE:img,mask_ratio=0.5] describe -> [TEXT:t]", "pic"), vocab, "train")
    data = TaskData(runner, [open_source(tmp_path / "img.jsonl")])

    def run(workers):
        loader, _ = build_loader([data], [TaskPlan("pic", 8, 4)], num_workers=workers, updates=3, seed=3)
        return [b.batch for b in loader]

    here, there = run(0), run(2)
    assert len(here) == len(there) == 3
    for a, b in zip(here, there):
        assert b.inputs["image_patch"].dtype == torch.uint8 and b.norms  # not normalized in the worker
        a, b = a.to("cpu"), b.to("cpu")
        assert torch.equal(a.inputs["image_patch"], b.inputs["image_patch"])
        assert torch.equal(a.decoder.inputs, b.decoder.inputs) and torch.equal(a.decoder.loss_mask, b.decoder.loss_mask)
        assert a.lengths.keys() == b.lengths.keys() and a.meta == b.meta


def test_a_batch_pickles_small_tensors_by_value(tmp_path, vocab):
    import pickle

    import torch
    from media import write_image

    write_image(tmp_path / "a.png")
    rng = np.random.default_rng(0)
    runner = TaskRunner(lower("[IMAGE:img] describe -> [TEXT:t]", "cap"), vocab, "valid")
    batch = collate([runner({"img": "a.png", "t": "a red box"}, rng, tmp_path)])
    back = pickle.loads(pickle.dumps(batch))
    assert torch.equal(back.decoder.inputs, batch.decoder.inputs)
    assert torch.equal(back.decoder.prefix, batch.decoder.prefix)
    assert torch.equal(back.inputs["image_patch"], batch.inputs["image_patch"])
    assert all(torch.equal(x, y) for x, y in zip(back.norms["image_patch"], batch.norms["image_patch"]))
    assert back.tasks == batch.tasks and back.layout == batch.layout and back.meta == batch.meta
    assert torch.equal(back.to("cpu").inputs["image_patch"], batch.to("cpu").inputs["image_patch"])


def test_resume_through_the_loader_with_prefetching(tmp_path, vocab):
    rows = [{"s": f"sentence {i}", "t": "ok"} for i in range(30)]
    data = _task(tmp_path, vocab, rows)
    whole = [b.batch.inputs["text"].tolist() for b in build_loader([data], [TaskPlan("sum", 30, 4)], updates=12)[0]]
    loader, sampler = build_loader([data], [TaskPlan("sum", 30, 4)], updates=12, num_workers=2)
    seen = []
    for b in loader:
        seen.append(b.batch.inputs["text"].tolist())
        if b.update == 4:
            state = sampler.state_before(5)
            break
    rest, _ = build_loader([data], [TaskPlan("sum", 30, 4)], updates=12, mixer_state=state)
    assert seen + [b.batch.inputs["text"].tolist() for b in rest] == whole


def test_collate_mixes_tasks(tmp_path, vocab):
    from media import write_image

    write_image(tmp_path / "a.png")
    rng = np.random.default_rng(0)
    caption = TaskRunner(lower("[IMAGE:img] describe -> [TEXT:t]", "cap"), vocab, "valid")
    text = TaskRunner(lower("summarize: [TEXT:s] -> [TEXT:t]", "sum"), vocab, "valid")
    samples = [caption({"img": "a.png", "t": "a red box"}, rng, tmp_path), text({"s": "x y z", "t": "yes"}, rng),
               caption({"img": "a.png", "t": "no"}, rng, tmp_path)]
    b = collate(samples)
    assert b.tasks == ["cap", "sum", "cap"] and b.inputs["image_patch"].shape == (2, 3, 256, 256)
    assert b.layout == [[("image_patch", 0), ("text", 0)], [("text", 1)], [("image_patch", 1), ("text", 2)]]
    d = b.decoder
    assert d.inputs.shape == d.target.shape == d.loss_mask.shape
    assert d.target_tokens == sum(sum(s.target.loss_mask) for s in samples)
    lengths = [len(s.target.target) for s in samples]
    assert all((d.target[i, n:] == 1).all() for i, n in enumerate(lengths))  # padding is PAD


def test_dataset_examples_are_deterministic(tmp_path, vocab):
    rows = [{"s": "the quick brown fox jumps over the lazy dog", "t": "x"}] * 4
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner = TaskRunner(lower("complete [TEXT:s,mask_ratio=0.4] -> [TEXT:s]", "inf"), vocab, "train")
    ds = MultiTaskDataset([TaskData(runner, [open_source(tmp_path / "d.jsonl")])], seed=4)
    a, b = ds.sample((0, 1, 0)), ds.sample((0, 1, 0))
    assert a.encoder[0].data.tolist() == b.encoder[0].data.tolist()  # same key, same masking
    other_epochs = {tuple(ds.sample((0, 1, e)).encoder[0].data.tolist()) for e in range(1, 6)}
    assert other_epochs - {tuple(a.encoder[0].data.tolist())}  # new epochs mask differently


def _sources(tmp_path, sizes: dict[str, int]) -> list:
    out = []
    for name, n in sizes.items():
        (tmp_path / name).write_text("".join(json.dumps({"s": f"{name} {i}", "t": "yes"}) + "\n" for i in range(n)))
        out.append(open_source(name, (), tmp_path))
    return out


def test_ofasys_paths_rotate_files_per_epoch_and_sample_datasets_by_ratio(tmp_path, vocab):
    """`a,b ||| c` with sample_ratios [1, 0.5]: epoch 0 reads all of a and half of c, epoch 1 all
    of b and another half of c; a ratio of 2.5 repeats a dataset twice and a half."""
    from ofac.datafile import split_paths
    from ofac.runtime.data.tasks import TaskDefinition

    files, datasets = split_paths(("a.jsonl, b.jsonl ||| c.jsonl",))
    assert files == ["a.jsonl", "b.jsonl", "c.jsonl"] and [d.epochs for d in datasets] == [((0,), (1,)), ((2,),)]
    assert split_paths(("a.jsonl", "b.jsonl"))[1][0].epochs == ((0, 1),)  # a list: concatenated every epoch
    task = lower('is " [TEXT:s] " ok? -> [TEXT:t]', "mix")
    definition = TaskDefinition(task, {"sample_ratios": (1.0, 0.5)}, {"train": ["a.jsonl,b.jsonl ||| c.jsonl"]})
    data = TaskData(TaskRunner(task, vocab), _sources(tmp_path, {"a.jsonl": 4, "b.jsonl": 6, "c.jsonl": 10}),
                    datasets=definition.datasets("train"))
    names = [[data.raw(int(i))["s"].split()[0] for i in data.epoch_rows(e, np.random.default_rng(e))]
             for e in range(3)]
    assert [(n.count("a.jsonl"), n.count("b.jsonl"), n.count("c.jsonl")) for n in names] == [(4, 0, 5), (0, 6, 5),
                                                                                             (4, 0, 5)]
    data.datasets = [replace(d, ratio=2.5) for d in data.datasets[1:]]
    drawn = data.epoch_rows(0, np.random.default_rng(0))
    assert len(drawn) == 25 and all(np.sum(drawn == r) >= 2 for r in range(10, 20))


def test_a_numbered_range_is_one_file_per_epoch():
    """OFASys' `name_[1-3]`: three paths, read one per epoch like comma-separated ones; a
    zero-padded start pads every number."""
    from ofac.datafile import expand_range, ofasys_paths, split_paths

    files, datasets = split_paths(("part_[1-3].jsonl ||| extra.jsonl",))
    assert files == ["part_1.jsonl", "part_2.jsonl", "part_3.jsonl", "extra.jsonl"]
    assert [d.epochs for d in datasets] == [((0,), (1,), (2,)), ((3,),)]
    assert ofasys_paths(("shard_[08-10].tsv",)) and not ofasys_paths(("plain.jsonl",))
    assert split_paths(("shard_[08-10].tsv",))[0] == ["shard_08.tsv", "shard_09.tsv", "shard_10.tsv"]
    assert expand_range("a_[5-5].jsonl") == ["a_5.jsonl"]
    with pytest.raises(ValueError, match="runs backwards"):
        expand_range("a_[3-1].jsonl")


def test_rotating_datasets_resume_exactly(tmp_path, vocab):
    from ofac.datafile import Dataset

    task = lower('is " [TEXT:s] " ok? -> [TEXT:t]', "mix")
    data = TaskData(TaskRunner(task, vocab), _sources(tmp_path, {"a.jsonl": 6, "b.jsonl": 9, "c.jsonl": 5}),
                    datasets=[Dataset(((0,), (1,)), 1.0), Dataset(((2,),), 0.6)])
    def plan():
        return [TaskPlan("mix", len(data), 3, epoch_rows=data.epoch_rows), TaskPlan("other", 8, 2)]

    whole = draw(Mixer(plan(), seed=5), 30)
    first = Mixer(plan(), seed=5)
    head = draw(first, 11)
    resumed = Mixer(plan(), seed=5)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + draw(resumed, 19) == whole
    rows = [int(r) for update in whole for t, keys in update if t == 0 for _, r, _ in keys]
    assert set(rows) <= set(range(20)) and {r for r in rows if r < 6} and {r for r in rows if 6 <= r < 15}


def test_a_run_reads_ofasys_rotating_files_one_per_epoch(tmp_path):
    """`train = "a.jsonl,b.jsonl"`: epoch 0 reads a, epoch 1 b, epoch 2 a again; only b has a bad
    row, so only epoch 1 reports one (on_error = skip)."""
    from ofac import compile_source
    from ofac.runtime.train.recipe import TrainingRun

    good = [{"s": f"row {i}", "t": "yes"} for i in range(4)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good[:3] + [{"s": "no target"}]))
    source = ('task t {\n  instruction: is " [TEXT:s] " ok? -> [TEXT:t]\n  train = "a.jsonl,b.jsonl"\n'
              '  micro_batch_size = 4\n  on_error = skip\n}\n'
              'model { d_model = 32  ffn_dim = 64  encoder_layers = 1  decoder_layers = 1  heads = 2 '
              '  vocab_size = 300 }\n'
              'train { steps = 3  eval_every = 1000  save_every = 1000  out = run }\n')
    compiled, diags = compile_source(source, str(tmp_path / "t.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    said: list[str] = []
    TrainingRun(compiled, tmp_path, log=said.append).fit()
    skips = [m for m in said if m.startswith("task `t` epoch")]  # the per-epoch reports
    assert len(skips) == 1 and "epoch 1" in skips[0] and "b.jsonl" in skips[0], said
