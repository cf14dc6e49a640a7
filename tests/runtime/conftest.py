import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

torch = pytest.importorskip("torch")

from ofac import compile_instruction  # noqa: E402
from ofac.runtime.data.corpus import reserved_for  # noqa: E402
from ofac.runtime.vocab.tokenizer import train_vocab  # noqa: E402

CORPUS = ["a red circle above a blue square", "what does the image describe?", "which region does the text",
          "describe", "yes", "no", "the quick brown fox jumps over the lazy dog", "what is said?"] * 5


def lower(instruction: str, name: str = "t", **model):
    """Compile an instruction; `model` are model-block settings (e.g. image_size=64)."""
    task, diags = compile_instruction(instruction, task=name, model=tuple(model.items()))
    assert task is not None, [d.message for d in diags]
    return task


@pytest.fixture(scope="session")
def vocab():
    tasks = [lower("[IMAGE:i] x -> [BOX:b]")]
    return train_vocab(CORPUS, 400, reserved_for(tasks, phones=["AH", "B", "K"]))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
