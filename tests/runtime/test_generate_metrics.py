"""Greedy decoding constraints and the validation metrics."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import lower

from ofac.runtime.data.collate import collate
from ofac.runtime.evaluate import metrics
from ofac.runtime.exec.run import TaskRunner
from ofac.runtime.generate.eager import Trie, greedy
from ofac.runtime.model.config import ModelConfig
from ofac.runtime.model.network import EncoderDecoder
from ofac.runtime.vocab.tokenizer import EOS


def test_trie_allows_only_continuations():
    trie = Trie([[5, 6], [5, 7, 8], [9]])
    assert sorted(trie.allowed([])) == [5, 9] and sorted(trie.allowed([5])) == [6, 7]
    assert trie.allowed([5, 6]) == [EOS] and trie.allowed([4]) == []


def test_greedy_keeps_the_prefix_respects_the_trie_and_lengths(vocab):
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=len(vocab), d_model=32, ffn_dim=64, encoder_layers=1,
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
    assert metrics.iou_acc([[0, 0, 10, 10]], [[5, 0, 15, 10]], threshold=0.33) == 1.0
    assert metrics.iou_acc([[0, 0, 10, 10]], [[5, 0, 15, 10]], threshold=0.34) == 0.0
    assert metrics.iou_acc([[0, 0, 10, 10], None], [[1, 1, 10, 10], [0, 0, 1, 1]]) == 0.5
    refs = ["a red circle above a square", "two green triangles", "a yellow square on the left"]
    good, bad = metrics.cider(refs, refs), metrics.cider(["a dog", "a dog", "a dog"], refs)
    assert good > 1.0 and bad < 0.05 * good


def test_cider_d_against_hand_computed_values():
    """Two references, idf over them: "a" weighs 0, "cat" and "dog" log 2.  "a cat" for "a cat"
    matches on 1- and 2-grams (cosine 1 each, 3- and 4-grams empty); for "a dog" nothing. With
    "a dog dog" for "a dog": 1-grams cosine 1/2 (the clipped count), 2-grams 1/sqrt(2), and the
    length penalty exp(-1/72)."""
    assert metrics.cider(["a cat", "a cat"], ["a cat", "a dog"]) == pytest.approx(10 * (0.25 + 0.25) / 2)
    second = (0.5 + 2 ** -0.5) * math.exp(-1 / 72) / 4
    assert metrics.cider(["a cat", "a dog dog"], ["a cat", "a dog"]) == pytest.approx(10 * (0.5 + second) / 2)


def test_matthews_against_hand_computed_values():
    """Binary confusion tp=2, tn=1, fp=1, fn=0: (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn))
    = 2 / sqrt(3 * 2 * 2 * 1) = 1/sqrt(3); labels are compared normalized."""
    refs = ["acceptable", "acceptable", "unacceptable", "unacceptable"]
    preds = ["Acceptable", "acceptable.", "acceptable", "unacceptable"]
    assert metrics.matthews_corrcoef(preds, refs) == pytest.approx(3 ** -0.5)
    assert metrics.matthews_corrcoef(refs, refs) == pytest.approx(1.0)
    assert metrics.matthews_corrcoef(refs[::-1], refs) == pytest.approx(-1.0)
    assert metrics.matthews_corrcoef(["acceptable"] * 4, refs) == 0.0  # a constant guess: no correlation


def test_vqa_score_against_hand_computed_values():
    """Ten human answers, two of them "red": leaving out a "red" leaves 1 match (1/3), leaving
    out another leaves 2 (2/3); the mean over the ten subsets is (2/3 + 16/3) / 10 = 0.6.
    Three "red" give (3 * 2/3 + 7 * 1) / 10 = 0.9, four or more 1.  OFASys' {answer:
    confidence} form scores the confidence; one answer scores an exact match."""
    ten = ["red", "red"] + ["orange"] * 8
    assert metrics.vqa_score(["Red"], [ten]) == pytest.approx(0.6)
    assert metrics.vqa_score(["red"], [["red"] * 3 + ["pink"] * 7]) == pytest.approx(0.9)
    assert metrics.vqa_score(["red"], [["red"] * 4 + ["pink"] * 6]) == pytest.approx(1.0)
    assert metrics.vqa_score(["blue"], [ten]) == 0.0
    assert metrics.vqa_score(["red", "orange"], [{"red": 0.6, "orange": 0.3}] * 2) == pytest.approx(0.45)
    assert metrics.vqa_score(["two", "3"], ["two", "three"]) == 0.5


def test_f_measure_against_hand_computed_values():
    """positive "yes": tp = 2, fp = 1, fn = 1, so F1 = 2*2 / (2*2 + 1 + 1) = 2/3."""
    preds, refs = ["yes", "Yes.", "no", "no", "yes"], ["yes", "no", "yes", "no", "yes"]
    assert metrics.f_measure(preds, refs, positive="yes") == pytest.approx(2 / 3)
    assert metrics.f_measure(preds, refs, positive="no") == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert metrics.f_measure(["no"] * 5, refs, positive="yes") == 0.0


def test_sudoku_solved_and_cell_accuracy():
    """Two 2x2 grids: the first solved, the second with one of its four cells wrong and one
    missing: solved 1/2, cells (4 + 2) / 8."""
    refs = ["1 : 2 | 2 : 1", "3 : 4 | 4 : 3"]
    preds = ["1 : 2 | 2 : 1", "3 : 3 | 4"]
    assert metrics.solved_acc(preds, refs) == 0.5
    assert metrics.cell_acc(preds, refs) == pytest.approx(6 / 8)
    assert metrics.solved_acc(["12 21"], refs[:1]) == 1.0  # the digits count, not the separators


def test_several_references():
    """With a list of references accuracy takes any, ROUGE-L the best, BLEU and CIDEr-D all;
    a repeated reference changes nothing."""
    assert metrics.accuracy(["blue", "grey"], [["red", "blue"], ["red"]]) == 0.5
    assert metrics.rouge_l(["the cat sat"], [["zebra", "the cat sat"]]) == pytest.approx(1.0)
    assert metrics.cider(["a cat", "a cat"], [["a cat", "a cat"], ["a dog"]]) == \
        pytest.approx(metrics.cider(["a cat", "a cat"], ["a cat", "a dog"]))
    one = metrics.bleu(["the quick brown fox jumps"], ["a quick brown fox leaps"])
    both = metrics.bleu(["the quick brown fox jumps"], [["a quick brown fox leaps", "the quick brown fox jumps"]])
    assert both == pytest.approx(1.0) and one < 0.5


def test_references_column_reaches_the_metric(vocab, rng, tmp_path):
    """`references = answers` sends each validation row's answers, in any of the forms OFASys
    data uses, to the metric instead of the target."""
    from ofac import compiler
    from ofac.runtime.evaluate.scorer import Scorer, reference_answers

    src = ('task vqa {\n  instruction: [TEXT:question] -> [TEXT:answer,closed_set]\n'
           '  metric = vqa_score\n  references = answers\n}\n')
    compiled, diags = compiler.compile_source(src, "t.ofa", tmp_path)
    assert compiled is not None, [d.message for d in diags]
    task = compiled.tasks[0]
    scorer = Scorer(task, vocab, answers=["red", "blue"])
    forms = [["red", "red", "red", "blue"], "1.0|!+red&&0.3|!+blue", "red&&blue", '["red", "red"]']
    refs = [scorer.reference(TaskRunner(task, vocab, "valid")({"question": "what colour?", "answer": "red",
                                                               "answers": f}, rng).meta) for f in forms]
    assert refs[1] == {"red": 1.0, "blue": 0.3} and refs[2] == ["red", "blue"] and refs[3] == ["red", "red"]
    # leave-one-out over 3 of 4 "red": (3 * 2/3 + 1) / 4; the confidence 1; one "red" of two: (0 + 1/3) / 2;
    # two "red": 1/3 each way
    assert scorer.metric(["red"] * 4, refs) == pytest.approx((0.75 + 1.0 + 1 / 6 + 1 / 3) / 4)
    assert reference_answers("just one") == ["just one"]


def test_rouge_l():
    assert metrics.rouge_l(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert metrics.rouge_l(["a cat sat"], ["the cat sat down"]) == pytest.approx(4 / 7)
    assert metrics.rouge_l(["zebra"], ["the cat"]) == 0.0


def test_detection_map():
    cat, dog = ([10, 10, 50, 50], "cat"), ([60, 60, 90, 95], "dog")
    assert metrics.mean_ap([[cat, dog]], [[cat, dog]]) == pytest.approx(1.0)
    assert metrics.mean_ap([[]], [[cat, dog]]) == 0.0
    swapped = [([10, 10, 50, 50], "dog"), ([60, 60, 90, 95], "cat")]  # right boxes, wrong labels
    assert metrics.mean_ap([swapped], [[cat, dog]]) == 0.0
    half = metrics.mean_ap([[cat]], [[cat, dog]])  # one of two classes found
    assert 0.4 < half < 0.6
    loose = ([14, 14, 50, 50], "cat")  # IoU 0.81 with the cat: right at 0.5, wrong at the stricter thresholds
    assert metrics.METRICS["map50"]([[loose]], [[cat]]) == pytest.approx(1.0)
    assert metrics.mean_ap([[loose]], [[cat]]) < 0.7


DB = {"db_id": "zoo", "tables": {"animal": {"name": ["Lion", "tiger", "bear"], "legs": [4, 4, 4], "age": [3, 5, 1]},
                                 "keeper": ["id", "name"]}}


def test_sql_execution_compares_results_not_text():
    gold = "SELECT name FROM animal WHERE age > 2"
    refs = [(gold, DB)] * 4
    preds = ["select name from animal where age >= 3",  # other text, same rows: right
             "SELECT name FROM animal WHERE age > 4",  # runs, other rows: wrong
             "SELECT nme FROM animal",  # does not run: wrong
             "SELECT name FROM animal WHERE age > 2 ORDER BY age DESC"]  # same rows, gold has no order: right
    assert metrics.sql_execution(preds, refs) == 0.5
    ordered = ("SELECT name FROM animal ORDER BY age", json.dumps(DB))  # the STRUCT may come as JSON text
    assert metrics.sql_execution(["SELECT name FROM animal ORDER BY age DESC"], [ordered]) == 0.0
    assert metrics.sql_execution(["SELECT count(*) FROM keeper"], [("SELECT 0", DB)]) == 1.0  # empty table


def test_sql_execution_on_a_sqlite_file_is_read_only(tmp_path):
    import sqlite3

    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE item (name, price)")
        conn.executemany("INSERT INTO item VALUES (?, ?)", [("pen", 2), ("book", 12)])
    gold = ("SELECT name FROM item WHERE price > 5", str(path))
    assert metrics.sql_execution(["SELECT name FROM item WHERE price >= 12"], [gold]) == 1.0
    assert metrics.sql_execution(["DELETE FROM item"], [gold]) == 0.0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (2,)  # untouched


def test_runaway_query_is_abandoned():
    big = {"tables": {"t": {"x": list(range(300))}}}
    assert metrics.sql_execution(["SELECT count(*) FROM t a, t b, t c"], [("SELECT 1", big)]) == 0.0


def test_box_text_postprocess_reads_objects_back():
    from ofac.runtime.evaluate.postprocess import box_text
    from ofac.runtime.preprocess.base import Geometry
    from ofac.runtime.vocab.tokenizer import Reserved, train_vocab

    vocab = train_vocab(["a cat and a dog"] * 20, vocab_size=300, reserved=Reserved(bins=100))
    attrs = {"bins": 100, "image": "img"}
    meta = {"images": {"img": Geometry.whole(198, 99, 99)}}
    b = vocab.bin
    tokens = [b(0), b(0), b(49), b(99)] + vocab.encode("cat") + [b(10), b(20)] + [b(50), b(50), b(99), b(99)] + \
        vocab.encode("dog")
    found = box_text(tokens, vocab, attrs, meta)
    assert [label for _, label in found] == ["cat", "dog"]  # the two stray bins before a box are dropped
    assert found[0][0] == pytest.approx([0, 0, 98, 99])  # back in the original image's pixels


def test_shown_predictions_mark_membership_in_several_references(tmp_path):
    from ofac.runtime.serve.evaluation import shown_predictions

    rows = [{"row": 1, "prediction": "Red", "reference": ["red", "orange"], "score": 0.0},
            {"row": 2, "prediction": "blue", "reference": {"red": 1.0}, "score": 0.0},
            {"row": 3, "prediction": "a cat", "reference": "a cat", "score": 0.0}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one, two, three = shown_predictions(tmp_path, ["t"], 3)
    assert "∈" in one and "[red, orange]" in one
    assert "∉" in two and "{red: 1.0}" in two
    assert "=" in three and "≠" not in three
