"""The run's vocabulary, trained on its data: the texts every token preprocessor contributes
(`corpus` of its registry entry: a cell's text, a linearized table), the symbols that get one
token each (`symbols`: phones, category labels), and the reserved tokens the tasks need
(`reserves`: box bins, image codes).  No torch."""
from __future__ import annotations

from ..preprocess import registry
from ..registry import attributes
from ..vocab.tokenizer import Reserved, Vocab, train_vocab
from .tasks import RunDefinition, as_definition, task_data


def reserved_for(tasks, phones=(), labels=()) -> Reserved:
    """The reserved tokens the given TaskIRs need, with the phones and the category labels."""
    bins = codes = 0
    for t in tasks:
        for p in t.programs:
            for op in p.of_kind("preprocess"):
                reserves = registry().entries[op.name].extra.get("reserves")
                if reserves is not None:
                    r = reserves(attributes(op))
                    bins, codes = max(bins, r.bins), max(codes, r.codes)
    return Reserved(bins, codes, tuple(sorted(set(phones))), tuple(sorted(set(labels))))


def corpus(tasks, datas, max_rows: int | None = None) -> tuple[list[str], dict[str, set[str]]]:
    """The texts a run's tokenizer is trained on, every instruction's constant text and what the
    token preprocessors make of the training rows' cells, and the symbols that get a token each
    (`symbols=(kind, read)` of a registry entry): {"phones": the phones of PHONE cells,
    "labels": the classes of `preprocess=category` cells}."""
    texts: list[str] = []
    symbols: dict[str, set[str]] = {"phones": set(), "labels": set()}
    preprocessors = registry()
    for task, data in zip(tasks, datas):
        readers: dict[str, dict] = {}  # column -> {preprocessor: (corpus, symbols, attrs)}
        for p in task.programs:
            for op in p.of_kind("preprocess"):
                impl = preprocessors.entries[op.name]
                if not op.args:  # the instruction's constant text
                    texts.append(op.get("text"))
                elif impl.extra.get("corpus") or impl.extra.get("symbols"):  # one reading of each kind is enough
                    readers.setdefault(p.arg(op).get("column"), {}).setdefault(
                        op.name, (impl.extra.get("corpus"), impl.extra.get("symbols"), attributes(op)))
        n = len(data) if max_rows is None else min(len(data), max_rows)
        for i in range(n):
            row = data.readable(i)
            if row is None:
                continue
            for col, uses in readers.items():
                value = row.get(col)
                if value is None:
                    continue
                for read_texts, read_symbols, attrs in uses.values():
                    if read_texts is not None:
                        texts += read_texts(value, attrs)
                    if read_symbols is not None:
                        kind, read = read_symbols
                        symbols[kind].update(read(value, attrs))
    return texts, symbols


def build_vocab(tasks, datas, vocab_size: int = 8000, max_rows: int | None = None) -> Vocab:
    """Train the run's vocabulary on its tasks' data, with the reserved tokens they need."""
    texts, symbols = corpus(tasks, datas, max_rows)
    return train_vocab(texts, vocab_size, reserved_for(tasks, symbols["phones"], symbols["labels"]))


def run_vocab(run: RunDefinition, max_rows: int | None = None) -> Vocab:
    """The run's vocabulary: `model { tokenizer = ... }` if given, else trained on the train data."""
    run = as_definition(run)
    if run.model.get("tokenizer"):
        return Vocab.load(run.base_dir / run.model["tokenizer"])
    train = task_data(run, "train", None)
    tasks = [t.ir for t in run.tasks if t.name in train]
    return build_vocab(tasks, [train[t.task] for t in tasks], run.model.get("vocab_size", 8000), max_rows)
