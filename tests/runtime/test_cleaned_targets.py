"""A text target's `uncased` / `no_punctuation` reach everything that compares with it: the
model learns to write the cleaned text, so a closed set's candidates (and the trie that
constrains training and generation to them) and the references a metric reads are cleaned
alike.  Before, the candidates kept the raw cells: `Yes!` was the only answer allowed while the
target taught `yes`."""
from __future__ import annotations

import numpy as np
import pytest

from ofac import compile_source
from ofac.runtime.data.sources import open_source
from ofac.runtime.data.tasks import TaskData
from ofac.runtime.evaluate.scorer import References, answer_trie, closed_set
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.vocab.tokenizer import train_vocab

ROWS = [{"s": "a b", "label": "Yes!", "refs": "Yes!&&yes"}, {"s": "c d", "label": "No.", "refs": "No."}]


def _task(target: str, extra: str = ""):
    source = f"""
task t {{
    instruction: is " [TEXT:s] " good? -> {target}
    {extra}
}}
"""
    compiled, diags = compile_source(source, "<t>", None, check_data=False)
    assert compiled is not None, [d.message for d in diags]
    task = compiled.tasks[0]
    vocab = train_vocab(["a b", "c d", "Yes!", "No.", "yes", "no"] * 5, 300)
    return task, vocab, TaskData(TaskRunner(task, vocab, "train"), [open_source(ROWS)])


def test_a_closed_set_is_the_cleaned_targets_and_its_trie_their_tokens():
    task, vocab, data = _task("[TEXT:label,closed_set,uncased,no_punctuation]")
    answers = closed_set(task, data)
    assert answers == ["no", "yes"]
    trie = answer_trie(task, vocab, answers)
    for i in range(len(ROWS)):
        target = data.sample(i, np.random.default_rng(i)).target
        tokens = target.target  # the answer's tokens and EOS: each step allowed by the trie
        assert all(t in trie.allowed(tokens[:k]) for k, t in enumerate(tokens))
        assert vocab.decode(tokens[:-1]) in answers


@pytest.mark.parametrize("extra", ["", "references = refs"])
def test_references_are_cleaned_as_the_target_is(extra):
    task, vocab, data = _task("[TEXT:label,uncased,no_punctuation]", extra)
    refs = References(task)
    got = [refs(data.sample(i, np.random.default_rng(i)).meta) for i in range(len(ROWS))]
    assert got == (["yes", "no"] if not extra else [["yes", "yes"], ["no"]])


def test_a_target_without_cleaning_keeps_its_cells():
    task, vocab, data = _task("[TEXT:label,closed_set]")
    assert closed_set(task, data) == ["No.", "Yes!"]
