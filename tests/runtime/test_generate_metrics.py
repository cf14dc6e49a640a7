"""Greedy decoding constraints and the validation metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import lower
from ofac.runtime import metrics
from ofac.runtime.collate import collate
from ofac.runtime.execute import TaskRunner
from ofac.runtime.generate import Trie, greedy
from ofac.runtime.model import GeneralistModel, ModelConfig
from ofac.runtime.tokenizer import EOS


def test_trie_allows_only_continuations():
    trie = Trie([[5, 6], [5, 7, 8], [9]])
    assert sorted(trie.allowed([])) == [5, 9] and sorted(trie.allowed([5])) == [6, 7]
    assert trie.allowed([5, 6]) == [EOS] and trie.allowed([4]) == []


def test_greedy_keeps_the_prefix_respects_the_trie_and_lengths(vocab):
    torch.manual_seed(0)
    model = GeneralistModel(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
                                        decoder_layers=1, heads=2, dropout=0.0)).eval()
    runner = TaskRunner(lower('is " [TEXT:s] " ok? -> answer: [TEXT:a,closed_set]'), vocab, "valid")
    rng = np.random.default_rng(0)
    batch = collate([runner({"s": "the fox", "a": "yes"}, rng), runner({"s": "a dog", "a": "no"}, rng)])
    answers = [vocab.encode("yes"), vocab.encode("no"), vocab.encode("the quick brown fox")]
    out = greedy(model, batch, max_len=10, trie=Trie(answers))
    assert all(o in answers for o in out)  # never outside the closed set
    free = greedy(model, batch, max_len=5, min_len=5)
    assert all(len(o) == 5 and EOS not in o for o in free)


def test_metrics():
    assert metrics.accuracy(["Red.", "blue"], ["red", "green"]) == 0.5
    assert metrics.wer(["three one five"], ["three one four"]) == pytest.approx(1 / 3)
    assert metrics.bleu(["the quick brown fox jumps over the dog"], ["the quick brown fox jumps over the dog"]) == \
        pytest.approx(1.0)
    assert metrics.iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    assert metrics.iou_acc([[0, 0, 10, 10], None], [[1, 1, 10, 10], [0, 0, 1, 1]]) == 0.5
    refs = ["a red circle above a square", "two green triangles", "a yellow square on the left"]
    good, bad = metrics.cider(refs, refs), metrics.cider(["a dog", "a dog", "a dog"], refs)
    assert good > 1.0 and bad < 0.05 * good
