"""The catalogue's generated data is what its tasks claim (examples/make_catalogue.py): sudoku
puzzles have exactly one solution, which is the target; the instruction-following valid split
holds only sub-tasks never trained on; no label of the GLUE forms can be read off the second
sentence alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("catalogue")
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "make_catalogue.py"), "--out", str(out),
                           "--scenes", "150", "--valid", "40", "--clips", "2"], capture_output=True, text=True,
                          env={**os.environ, "OFAC_MAX_ROWS": ""})
    assert done.returncode == 0, done.stderr
    return out


def _rows(out: Path, name: str, split: str = "train") -> list[dict]:
    return [json.loads(line) for line in (out / f"{name}_{split}.jsonl").read_text().splitlines()]


def _grid(text: str) -> list[list[int]]:
    return [[int(v) for v in row.split(" : ")] for row in text.split(" | ")]


def _count(grid: list[list[int]], limit: int = 2) -> int:
    """Solutions of a sudoku by plain backtracking in reading order (independent of the
    generator's solver)."""
    n = len(grid)
    box = int(n ** 0.5)
    for r in range(n):
        for c in range(n):
            if grid[r][c] == 0:
                found = 0
                for d in range(1, n + 1):
                    br, bc = r - r % box, c - c % box
                    if d in grid[r] or any(grid[i][c] == d for i in range(n)) or \
                            any(grid[br + i][bc + j] == d for i in range(box) for j in range(box)):
                        continue
                    grid[r][c] = d
                    found += _count(grid, limit - found)
                    grid[r][c] = 0
                    if found >= limit:
                        break
                return found
    return 1


def test_every_sudoku_has_one_solution_and_it_is_the_target(data):
    rows = _rows(data, "sudoku") + _rows(data, "sudoku", "valid")
    sizes = {len(_grid(r["src"])) for r in rows}
    assert sizes == {4, 9}
    for row in rows:
        puzzle, solution = _grid(row["src"]), _grid(row["tgt"])
        n = len(solution)
        assert all(sorted(line) == list(range(1, n + 1)) for line in solution)
        assert all(sorted(col) == list(range(1, n + 1)) for col in zip(*solution))
        assert all(p in (0, s) for pr, sr in zip(puzzle, solution) for p, s in zip(pr, sr))
        assert any(0 in line for line in puzzle)
        assert _count([list(line) for line in puzzle]) == 1, row["src"]


def test_instruction_following_is_scored_on_unseen_sub_tasks(data):
    def pools(split):
        seen = defaultdict(set)
        for row in _rows(data, "natural_instructions", split):
            seen[row["task_name"]] |= set(row["src"].split("Input:")[1].split(".")[0].split())
        return seen

    train, valid = pools("train"), pools("valid")
    assert train.keys() == valid.keys() and len(train) >= 4
    assert all(not (train[k] & valid[k]) for k in train), "a valid sub-task shares words with its training one"


def test_the_words_alone_do_not_tell_which_sub_task_a_row_is(data):
    """Every word is trained with several kinds of operation: a model cannot pick the operation
    from the words and must read the definition (two pools of words, one per kind, taught that)."""
    kinds = defaultdict(set)
    for row in _rows(data, "natural_instructions"):
        for word in row["src"].split("Input:")[1].split(".")[0].split():
            kinds[word].add(row["task_name"])
    assert min(len(k) for k in kinds.values()) >= 3, dict(kinds)


@pytest.mark.parametrize("task,second", [("mnli", "hypothesis"), ("mrpc", "sentence2")])
def test_the_second_sentence_alone_does_not_tell_the_label(data, task, second):
    """Hypothesis-only bias: every form of the second sentence appears with more than one label."""
    labels = defaultdict(set)
    for row in _rows(data, task):
        form = " ".join(w if w in ("a", "the", "is", "by", "something") else "_" for w in row[second].split())
        labels[form].add(row["label"])
    assert len({lab for ls in labels.values() for lab in ls}) >= 2
    ambiguous = sum(len(ls) > 1 for ls in labels.values())
    assert ambiguous >= len(labels) / 2, dict(labels)


def test_a_matching_caption_names_the_scene_s_shapes_and_a_mismatched_one_is_another_scene_s(data):
    """The grounded region's shape (one of the scene's) is in every matching caption, which names
    every shape; a mismatched caption, another scene's, holds it far less often."""
    shape = {r["img"]: r["cap"].removeprefix("a ") for r in _rows(data, "grounded")}
    rows = _rows(data, "itm")
    yes = [shape[r["0"]] in r["2"] for r in rows if r["4"] == "yes"]
    no = [shape[r["0"]] in r["2"] for r in rows if r["4"] == "no"]
    assert len(yes) > len(rows) / 4 and len(no) > len(rows) / 4
    assert all(yes) and sum(no) < 0.5 * len(no)
