"""Every attribute the lowering can emit is read by the runtime.

Statically: every instruction of the OFASys corpus and every example file lowers to ops whose
implementations exist (or say "not supported yet") and declare each attribute the op carries.
Dynamically: for every supported implementation, a task using all of its attributes trains a
step, validates and answers while the runtime records the attributes it reads; every declared
attribute must be among them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import lower
from helpers import EXAMPLES, ofasys_corpus
from media import write_audio, write_image, write_video

from ofac import compiler
from ofac.runtime.codec.image import ImageCodec, ImageCodecConfig
from ofac.runtime.codec.motion import MotionCodec
from ofac.runtime.codec.speech import SpeechCodec, SpeechFeatures
from ofac.runtime.codec.tokenizer import ImageTokenizer
from ofac.runtime.data.collate import collate
from ofac.runtime.data.corpus import reserved_for
from ofac.runtime.data.rows import TaskData
from ofac.runtime.data.sources import open_source
from ofac.runtime.evaluate.evaluation import evaluate
from ofac.runtime.evaluate.postprocess import POSTPROCESS
from ofac.runtime.evaluate.scorer import Scorer, answer_trie, closed_set
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.exec.targets import TARGETS
from ofac.runtime.generate import GENERATORS
from ofac.runtime.generate.diffusion import MotionFeatures
from ofac.runtime.generate.speech import Frames
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.heads import HEADS, LOSSES
from ofac.runtime.model.network import EncoderDecoder
from ofac.runtime.preprocess import bvh, registry
from ofac.runtime.preprocess.motion import encode
from ofac.runtime.registry import Attributes
from ofac.runtime.train.update import TaskLoss
from ofac.runtime.vocab.tokenizer import BLANK_PHONE, train_vocab

REGISTRIES = {"preprocess": [registry("torch"), registry("numpy")], "target": [TARGETS, HEADS], "loss": [LOSSES],
              "generate": [GENERATORS], "postprocess": [POSTPROCESS]}


def _lowered():
    for name, text in ofasys_corpus():
        task, _ = compiler.compile_instruction(text, task=name)
        yield name, task
    for path in EXAMPLES:
        compiled, _ = compiler.compile_file(path, check_data=False)
        for task in compiled.tasks:
            yield f"{path.name}:{task.task}", task


def test_every_emitted_attribute_is_declared_by_its_implementation():
    problems = []
    for where, task in _lowered():
        for p in task.programs:
            for op in p.ops:
                for reg in REGISTRIES.get(op.kind, []):
                    impl = reg.entries.get(op.name)
                    if impl is None:
                        problems.append(f"{where}: no implementation of {op.opcode} in the {reg.kind} registry")
                    elif not impl.unsupported:
                        given = {k for k, _ in op.attrs}
                        problems += [f"{where}: {op.opcode} emits `{a}`, which its implementation does not read"
                                     for a in sorted(given - impl.attrs)]
                        problems += [f"{where}: {op.opcode} lacks required `{a}`"
                                     for a in sorted(impl.required - given)]
    assert problems == []


# instructions (with their task file's generate settings) that use every attribute of every
# supported implementation, and a row for each
MODEL = dict(image_size=32, patch_size=8, box_bins=32, video_frames=4)
CASES = [
    ("[IMAGE:img,mask_ratio=0.5] what? -> [TEXT:cap,noise_ratio=0.1,uncased,no_punctuation,max_length=8]",
     {"img": "a.png", "cap": "A red, box."}),
    ('[IMAGE:img,preprocess=imagenet,mask_ratio=0.3] " [TEXT:q,mask_ratio=0.3,max_length=6] " -> [TEXT:a,closed_set]',
     {"img": "a.png", "q": "what colour is it here", "a": "red"}),
    ("[IMAGE:img] which colour? -> [TEXT:a,preprocess=category,uncased,no_punctuation,max_length=2]",
     {"img": "a.png", "a": "Red!"}),
    ("[IMAGE:img,preprocess=imagepretrain,mask_ratio=0.2] which region? -> [BOX:box]",
     {"img": "a.png", "box": [2, 2, 20, 20]}),
    ("[IMAGE:img] objects? -> ( [BOX:boxes] [TEXT:labels] )*", {"img": "a.png", "boxes": [[2, 2, 20, 20]],
                                                                 "labels": ["red"]}),
    ("[AUDIO:wav,use_mask,n_frames_per_step=1] said? -> [TEXT:t]", {"wav": "a.wav", "t": "yes"}),
    ("[AUDIO:wav] said? -> [TEXT:t,preprocess=text_phone,uncased,no_punctuation,noise_ratio=0.1,max_length=8]",
     {"wav": "a.wav", "t": "Yes, red."}),
    ("[VIDEO:v,num_frames=4] what happens? -> [TEXT:t]", {"v": "v.mp4", "t": "it moves"}),
    ("[VIDEO:v,preprocess=video_augment] what happens? -> [TEXT:t]", {"v": "v.mp4", "t": "it moves"}),
    ("[STRUCT:t,preprocess=table,uncased,max_length=12] -> [TEXT:x]", {"t": [["Ann", "Age", "3"]], "x": "ann"}),
    ("[STRUCT:db,preprocess=database,uncased,max_length=20] [TEXT:q] -> [TEXT:sql]",
     {"db": {"db_id": "d", "tables": {"t": {"x": [1, 2]}}}, "q": "count", "sql": "SELECT count(*) FROM t"}),
    ("[PHONE:p,mask_ratio=0.2,max_length=4] -> [TEXT:t]", {"p": "AH B K", "t": "abc"}),
    ("summarize [TEXT:s] -> [TEXT:t]", {"s": "the quick brown fox", "t": "fox"}),
    ("draw [TEXT:t] -> [IMAGE:x,preprocess=image_vqgan,adaptor=image_vqgan,length=60]",
     {"t": "a red box", "x": "a.png"}),
    ("[PHONE:p] -> [AUDIO:a,adaptor=audio_tgt_fbank,n_frames_per_step=2]", {"p": "AH B K", "a": "a.wav"}),
    ("motion: [TEXT:t] -> [MOTION:m,preprocess=motion_6d,adaptor=motion_6d,max_length=12,min_length=4,sample_rate=2,"
     "window]", {"t": "a person walks", "m": "a.bvh"}),
    ("[MOTION:m,preprocess=motion_6d,soft_trim=0.2,anchor_frame=3] what? -> [TEXT:t]", {"m": "b.npz", "t": "walks"}),
]
GENERATE = {"top_k": 5, "top_p": 0.9}  # set in a generate block only; every case carries them


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    write_image(root / "a.png", size=(40, 30), box=(2, 2, 20, 20))
    write_audio(root / "a.wav", seconds=0.6, rate=16000)
    write_video(root / "v.mp4", frames=6)
    sk = bvh.Skeleton(["Hips", "Knee"], [-1, 0], np.array([[0.0, 0, 0], [0, -40, 0]]), ["ZXY", "XYZ"], "XYZ",
                      [(1, np.array([0.0, -40, 0]))], 0.05)
    frames = np.random.default_rng(0).uniform(-30, 30, (30, sk.channels))
    bvh.write(root / "a.bvh", sk, frames)
    bvh.write(root / "skel.bvh", sk, frames[:0])
    np.savez(root / "b.npz", frames=frames, weights=(np.arange(30) < 5).astype(np.float32))
    MotionCodec.save(root / "motion", sk, [encode(sk, frames)])
    torch.manual_seed(0)  # an untrained image tokenizer of the default sizes, for the image target
    ImageTokenizer.save(root / "tokenizer", ImageCodec(ImageCodecConfig()), {}, {})
    return root


def _run_everything(instruction: str, row: dict, root) -> None:
    """Train one step, validate and answer `instruction` on copies of `row`."""
    task, diags = compiler.compile_instruction(instruction, model=tuple(MODEL.items()))
    assert task is not None, [d.message for d in diags]
    task = _with_generate(task)
    texts = [str(v) for v in row.values() if isinstance(v, str)] + ["red", "yes", "the quick brown fox"]
    vocab = train_vocab(texts * 10, 300, reserved_for([task], phones=["AH", "B", "K", "r", "E", "d", BLANK_PHONE],
                                                      labels=["red"]))
    rows = [dict(row) for _ in range(4)]
    resources = {"image": ImageTokenizer.load(root / "tokenizer"), "audio": SpeechCodec.unnormalized(SpeechFeatures()),
                 "motion": MotionCodec.load(root / "motion")}
    train = TaskData(TaskRunner(task, vocab, "train", resources=resources), [open_source(rows, base_dir=root)])
    valid = TaskData(TaskRunner(task, vocab, "valid", resources=resources), [open_source(rows, base_dir=root)])
    adaptors = sorted({op.name for op in task.programs[0].of_kind("adapt") if op.get("side") == "encoder"})
    head = task.programs[0].only("target").name
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                       decoder_layers=1, heads=2, image_size=32, patch_size=8, video_frames=4,
                                       adaptors=tuple(adaptors), dropout=0.0, outputs=(head,),
                                       code_ids=(vocab.code_ids[0], len(vocab.code_ids)) if vocab.code_ids else (0, 0),
                                       code_grid=8 if vocab.code_ids else 0, frame_dim=160, motion_dim=18))
    answers = closed_set(task, train)
    loss = TaskLoss.of(task, answer_trie(task, vocab, answers))
    batch = collate([train.sample(i, np.random.default_rng(i)) for i in range(2)]).to("cpu")
    terms = loss.run(model(batch), batch.decoder, loss.attrs, loss.trie)
    (loss.weight * terms.total).backward()
    scorer = Scorer(task, vocab, answers, resources=resources)
    evaluate(model, valid, scorer, "cpu", keep=True)
    gold = valid.sample(0, np.random.default_rng(0))  # an untrained model may generate nothing a
    t = gold.target                                  # postprocessor reads: decode the reference too
    if head == "frames":  # the reference's own steps, as generated ones
        scorer.output(Frames(t.target, True), gold.meta)
    elif head == "motion":
        scorer.output(MotionFeatures(t.target), gold.meta)
    elif head == "codes":  # code targets are indices in the code range
        scorer.output([vocab.code_ids[i] for i in t.target], gold.meta)
    else:
        scorer.output([tok for tok, m in zip(t.target[t.prefix:-1], t.loss_mask[t.prefix:-1]) if m], gold.meta)


def _scst_task():
    source = "task cap {\n  instruction: describe [TEXT:s] -> [TEXT:t]\n  scst = true\n  scst_samples = 2\n}\n"
    compiled, diags = compiler.compile_source(source, "<t>", None, check_data=False)
    assert compiled is not None, [d.message for d in diags]
    return compiled.tasks[0]


def _run_scst(task) -> None:
    """One SCST update's loss (the loss generates, so it takes the model) on two rows."""
    from ofac.runtime.evaluate.metrics import CiderD

    rows = [{"s": "a red box", "t": "red box"}, {"s": "a blue box", "t": "blue box"}]
    vocab = train_vocab(["a red box", "a blue box", "red box", "blue box"] * 10, 300, reserved_for([task]))
    data = TaskData(TaskRunner(task, vocab, "train"), [open_source(rows)])
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                       decoder_layers=1, heads=2, dropout=0.0))
    loss = TaskLoss.of(task, context={"vocab": vocab, "column": "t", "cider": CiderD([r["t"] for r in rows])})
    batch = collate([data.sample(i, np.random.default_rng(i)) for i in range(2)])
    (loss.weight * loss.run(model, batch, loss).total).backward()


def _with_generate(task):
    """The task as a generate block setting GENERATE would lower it."""
    from dataclasses import replace

    programs = []
    for p in task.programs:  # (the speech loop and the diffusion sampler have no top-k: they would refuse them)
        ops = tuple(replace(op, attrs=op.attrs + tuple(GENERATE.items()))
                    if op.kind == "generate" and op.name not in ("speech", "diffusion") else
                    replace(op, attrs=op.attrs + (("length", 12),)) if op.opcode == "generate.diffusion" else
                    replace(op, attrs=op.attrs + (("bvh_header", "skel.bvh"),)) if op.opcode == "preprocess.motion_6d"
                    else op
                    for op in p.ops)
        programs.append(replace(p, ops=ops))
    return replace(task, programs=tuple(programs))


def test_the_runtime_reads_every_attribute_it_declares(media, monkeypatch):
    monkeypatch.setattr(Attributes, "reads", set())
    emitted = set()
    for instruction, row in CASES:
        task, _ = compiler.compile_instruction(instruction, model=tuple(MODEL.items()))
        emitted |= {(op.opcode, k) for p in _with_generate(task).programs for op in p.ops
                    if op.kind in REGISTRIES for k, _ in op.attrs}
        _run_everything(instruction, row, media)
    scst_task = _scst_task()  # a task setting, not an instruction, selects SCST's loss
    emitted |= {(op.opcode, k) for p in scst_task.programs for op in p.ops if op.kind in REGISTRIES
                for k, _ in op.attrs}
    _run_scst(scst_task)
    unread = sorted(emitted - Attributes.reads)
    assert unread == []
    # and the cases cover every attribute every supported implementation declares
    declared = {(f"{kind}.{impl.name}", a) for kind, regs in REGISTRIES.items() for reg in regs
                for impl in reg.entries.values() if not impl.unsupported for a in impl.attrs}
    # beam-search settings a sampled image target never carries
    beam_only = {("generate.sample", a) for a in ("len_penalty", "no_repeat_ngram_size", "answers")}
    assert sorted(declared - emitted - beam_only) == []


def test_an_attribute_no_implementation_reads_is_refused_at_load(vocab):
    from dataclasses import replace

    from ofac.runtime.errors import NotSupportedYet

    task = lower("[IMAGE:img] what? -> [TEXT:cap]")
    ops = tuple(replace(op, attrs=op.attrs + (("sharpen", True),)) if op.opcode == "preprocess.image" else op
                for op in task.programs[0].ops)
    task = replace(task, programs=(replace(task.programs[0], ops=ops),))
    with pytest.raises(NotSupportedYet, match="attribute sharpen is not read by the runtime"):
        TaskRunner(task, vocab)
