"""`[TEXT:label,preprocess=category]`: one token per class of the training data (OFASys'
`CategoryPreprocess`), the loss and the answer constrained to the classes, the label decoded as
its text, through training, the Python API and the exported ONNX graphs."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ofac.compiler import compile_source
from ofac.runtime.preprocess.base import Context
from ofac.runtime.preprocess.text import category
from ofac.runtime.serve.answer import OFASys
from ofac.runtime.train.recipe import TrainingRun
from ofac.runtime.vocab.tokenizer import UNK, Vocab

CLASSES = {"red": "Warm", "orange": "Warm", "blue": "Cold Blue", "green": "Cold Green", "grey": "neutral"}
FILLER = "the a big small old new round flat tall short near far".split()


def sentences(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        colour = rng.choice(sorted(CLASSES))
        words = rng.sample(FILLER, 4)
        words.insert(rng.randrange(5), colour)
        rows.append({"s": " ".join(words), "label": CLASSES[colour]})
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("category")
    rng = random.Random(5)
    for split, n in (("train", 160), ("valid", 24)):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sentences(rng, n)))
    source = """
task tone {
    instruction: what is the tone of " [TEXT:s] "? -> [TEXT:label,preprocess=category,uncased]
    train = train.jsonl
    valid = valid.jsonl
    micro_batch_size = 16
}
model { d_model = 64  ffn_dim = 128  encoder_layers = 2  decoder_layers = 1  heads = 4  vocab_size = 300 }
train { steps = 80  lr = 3e-3  warmup = 5  eval_every = 40  out = run  seed = 2 }
"""
    (root / "t.ofa").write_text(source)
    compiled, diags = compile_source(source, str(root / "t.ofa"), root)
    assert compiled is not None, [d.message for d in diags]
    result = TrainingRun(compiled, root).fit()
    return root, result


def test_each_class_is_one_token_of_the_run_vocabulary(run):
    root, _ = run
    vocab = Vocab.load(root / "run" / "tokenizer.json")
    # `uncased` folds the classes as it folds text; a class of two words is still one token
    assert set(vocab.label_ids) == {"warm", "cold blue", "cold green", "neutral"}
    train = Context(vocab, "train", np.random.default_rng(0))
    assert category("Cold  Blue", {"uncased": True}, train).ids == [vocab.label_ids["cold blue"]]
    assert vocab.decode([vocab.label_ids["cold blue"], 2]) == "cold blue"
    with pytest.raises(ValueError, match="'purple' has no token"):  # a training label the tokenizer lacks
        category("purple", {}, train)
    assert category("purple", {}, Context(vocab, "valid", np.random.default_rng(0))).ids == [UNK]


def test_a_category_task_learns_and_answers_only_its_classes(run):
    root, result = run
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    rows = [json.loads(line) for line in (root / "valid.jsonl").read_text().splitlines()]
    labels = [r["label"].lower() for r in rows]
    majority = max(labels.count(c) for c in set(labels)) / len(labels)  # always answering the commonest class
    valid = [r["valid"]["tone"] for r in result.history if "valid" in r]
    assert valid[-1]["accuracy"] >= max(0.9, majority + 0.3)  # on held-out sentences
    system = OFASys.from_pretrained(root / "run")
    outs = system.inference("tone", [{"s": r["s"]} for r in rows], beam_size=4)
    assert np.mean([o.text == r["label"].lower() for o, r in zip(outs, rows)]) >= 0.9
    for out in outs:  # the n-best are distinct classes, best first
        assert len(out.n_best) == 4 and {o.text for o in out.n_best} <= {"warm", "cold blue", "cold green", "neutral"}
        assert len({o.text for o in out.n_best}) == 4 and out.scores == sorted(out.scores, reverse=True)


@pytest.mark.slow
def test_the_exported_graphs_answer_as_pytorch_does(run, tmp_path):
    from ofac.runtime.serve.deployed import load
    from ofac.runtime.serve.export import export

    root, _ = run
    export(root / "run", tmp_path / "onnx")
    rows = [{"s": json.loads(line)["s"]} for line in (root / "valid.jsonl").read_text().splitlines()]
    eager = OFASys.from_pretrained(root / "run").inference("tone", rows)
    onnx = load(tmp_path / "onnx").inference("tone", rows)
    assert [o.text for o in onnx] == [o.text for o in eager]
