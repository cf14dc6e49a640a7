"""Self-critical sequence training (`scst = true`, OFA's second captioning stage) and the
`train { init = RUN }` that starts such a stage from an earlier run's weights and tokenizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_trainer import make_task_file

from ofac import compile_source
from ofac.runtime.data.collate import collate
from ofac.runtime.data.sources import open_source
from ofac.runtime.data.tasks import TaskData
from ofac.runtime.evaluate import metrics
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.network import EncoderDecoder
from ofac.runtime.store.checkpoint import CheckpointError
from ofac.runtime.train.recipe import TrainingRun
from ofac.runtime.train.scst import scst
from ofac.runtime.train.update import TaskLoss
from ofac.runtime.vocab.tokenizer import train_vocab

CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a red square", "two blue circles"]
SOURCE = """
task cap {
    instruction: what does the text describe? [TEXT:src] -> [TEXT:cap]
    scst = true
    scst_samples = 4
    generate { max_len = 6 }
}
"""


def test_the_cider_d_scorer_is_the_metric_with_its_document_frequencies():
    refs = [["a red circle", "a circle"], "a blue square", "two blue circles"]
    preds = ["a red circle", "a square", "blue circles"]
    scorer = metrics.CiderD(refs)
    assert np.mean([scorer.score(p, r) for p, r in zip(preds, refs)]) == pytest.approx(metrics.cider(preds, refs))
    assert scorer.score("a blue square", "a blue square") > scorer.score("a red square", "a blue square") > 0


def test_scst_needs_a_text_target():
    source = SOURCE.replace("-> [TEXT:cap]", "-> [TEXT:cap,closed_set]")
    compiled, diags = compile_source(source, "<t>", None, check_data=False)
    assert compiled is None and [d.code for d in diags] == ["E0045"]


def _setup(dropout: float = 0.0):
    """(model in training mode, a batch of CAPTIONS, the task's SCST loss)."""
    compiled, diags = compile_source(SOURCE, "<t>", None, check_data=False)
    assert compiled is not None, [d.message for d in diags]
    task = compiled.tasks[0]
    rows = [{"src": c.replace("a ", "one ", 1), "cap": c} for c in CAPTIONS]
    vocab = train_vocab([r["src"] for r in rows] + CAPTIONS * 4, 300)
    data = TaskData(TaskRunner(task, vocab, "train"), [open_source(rows)])
    batch = collate([data.sample(i, np.random.default_rng(i)) for i in range(len(rows))])
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                       decoder_layers=1, heads=2, dropout=dropout))
    model.train()
    loss = TaskLoss.of(task, context={"vocab": vocab, "column": "cap", "cider": metrics.CiderD(CAPTIONS)})
    return model, batch, loss


def test_the_samples_are_scored_as_they_were_drawn_without_dropout():
    """The policy gradient is of the distribution that sampled (generation runs without dropout):
    the same weights with heavy dropout or none give the same loss, and the model trains on after."""
    model, batch, loss = _setup(dropout=0.5)
    plain, _, _ = _setup(dropout=0.0)
    plain.load_state_dict(model.state_dict())
    plain.train()
    totals = []
    for m in (model, plain):
        torch.manual_seed(7)
        totals.append(scst(m, batch, loss).total.item())
    assert totals[0] == pytest.approx(totals[1], rel=1e-5) and model.training


def test_an_update_raises_the_advantage_weighted_likelihood_of_the_samples():
    """The loss is -1/K sum (r(sample) - r(greedy)) log p(sample): a small step down its gradient
    makes the samples that beat the greedy answer likelier, relative to those that do not."""
    model, batch, loss = _setup()
    assert loss.reads_model and loss.attrs["samples"] == 4

    torch.manual_seed(7)
    terms = scst(model, batch, loss)
    assert torch.isfinite(terms.total) and terms.nll > 0
    before = terms.total.item()
    terms.total.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 1e-3 * p.grad
    torch.manual_seed(7)  # the same samples, scored by the updated model
    after = scst(model, batch, loss).total.item()
    assert after < before


@pytest.mark.slow
def test_init_starts_from_the_earlier_runs_weights_and_tokenizer(tmp_path):
    first = TrainingRun(make_task_file(tmp_path, steps=20), tmp_path).fit()  # runs/ `run`, validated at step 20
    text = (tmp_path / "t.ofa").read_text().replace("steps = 20", "steps = 2  init = run").replace(
        "lr = 3e-3", "lr = 0").replace("out = run", "out = second")
    compiled, diags = compile_source(text, str(tmp_path / "t2.ofa"), tmp_path)
    assert compiled is not None, [d.message for d in diags]
    second = TrainingRun(compiled, tmp_path).fit()
    assert (tmp_path / "second" / "tokenizer.json").read_text() == (tmp_path / "run" / "tokenizer.json").read_text()
    # with no learning rate the second stage scores what the first one's best weights scored
    valid = [r["valid"] for r in first.history if "valid" in r]
    assert [r["valid"] for r in second.history if "valid" in r][-1] == valid[-1]
    compiled, _ = compile_source(text.replace("init = run", "init = nowhere"), str(tmp_path / "t3.ofa"), tmp_path)
    with pytest.raises(CheckpointError, match="without a tokenizer.json"):
        TrainingRun(compiled, tmp_path, out=tmp_path / "third").fit()
    assert not (tmp_path / "third").exists()  # nothing written
