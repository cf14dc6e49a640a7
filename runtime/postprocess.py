"""Postprocess ops of the IR: generated tokens back into outputs (text, a box in the pixels of
the original image, or a list of (box, label) objects), and the references a task's metric
compares them with, and the Scorer that reads both from a task's IR.  Validation and inference
share these, so both score the same way; nothing here imports torch."""
from __future__ import annotations

import json

from ofac import ir

from .errors import NotSupportedYet
from .metrics import METRICS
from .preprocess.box import dequantize, parse_box
from .search import GenerateConfig, Trie


def _image(meta: dict, post: ir.Op) -> dict:
    return meta["images"][post.get("image")]


def _box(bins: list[int], image: dict, post: ir.Op) -> list[float]:
    return dequantize(bins, image["size"], post.get("bins"), image["orig_size"], image["flipped"])


def decode(tokens: list[int], vocab, post: ir.Op, meta: dict):
    """`postprocess.text` -> str; `postprocess.box` -> [x0, y0, x1, y1] or None (not four bin
    tokens); `postprocess.box_text` -> [([x0, y0, x1, y1], label), ...]."""
    output = post.op.split(".", 1)[1]
    if output == "box":
        bins = [vocab.bin_index.get(t) for t in tokens[:4]]
        return None if len(bins) < 4 or None in bins else _box(bins, _image(meta, post), post)
    if output == "box_text":
        return objects(tokens, vocab, post, meta)
    return vocab.decode(tokens)


def objects(tokens: list[int], vocab, post: ir.Op, meta: dict) -> list[tuple[list[float], str]]:
    """Each run of bin tokens holds boxes of four bins; the text tokens after a run label its
    last box.  A run whose length is not a multiple of four loses its leading bins (the box
    next to the label is the one to keep)."""
    out, i, n = [], 0, len(tokens)
    image = _image(meta, post)
    while i < n:
        j = i
        while j < n and tokens[j] in vocab.bin_index:
            j += 1
        if j == i:  # text before any box: no object to label
            i += 1
            continue
        k = j
        while k < n and tokens[k] not in vocab.bin_index:
            k += 1
        bins = [vocab.bin_index[t] for t in tokens[i:j]]
        boxes = [bins[a:a + 4] for a in range(len(bins) % 4, len(bins), 4)]
        for m, box in enumerate(boxes):
            out.append((_box(box, image, post), vocab.decode(tokens[j:k]) if m == len(boxes) - 1 else ""))
        i = k
    return out


def _listed(value) -> list:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [v for v in value.split("|") if v.strip()] if "|" in value else [value]
        return parsed if isinstance(parsed, list) else [parsed]
    return list(value) if value is not None else []


class References:
    """What a task's metric compares a prediction with, read from a sample's meta."""

    def __init__(self, task: ir.TaskIR):
        self.output, self.metric = task.get("output"), task.get("metric")
        self.targets = list(task.get("targets", ()))
        ops = task.programs[0].ops
        reads = [op for op in ops if op.family == "read.column" and op.get("side") == "decoder"]
        self.box_columns = [op.get("column") for op in reads if op.get("modality") == "BOX"]
        self.label_columns = [op.get("column") for op in reads if op.get("modality") == "TEXT"
                              and op.get("column") in self.targets]
        self.databases = [ops[op.args[0]].get("column") for op in ops if op.op == "preprocess.database"]

    def __call__(self, meta: dict):
        targets = meta["targets"]
        if self.output == "box":
            return parse_box(targets.get(self.box_columns[0]))
        if self.output == "box_text":
            boxes = [parse_box(b) for b in _listed(targets.get(self.box_columns[0]))]
            labels = _listed(targets.get(self.label_columns[0])) if self.label_columns else [""] * len(boxes)
            return list(zip(boxes, (str(x) for x in labels)))
        text = str(targets.get(self.targets[-1]))
        if self.metric == "sql_execution":
            return text, (meta.get("databases") or {}).get(self.databases[0]) if self.databases else None
        return text


def closed_set(task: ir.TaskIR, train=None) -> list[str] | None:
    """The candidate answers of a closed-set task: its `answers`, else every training target;
    None for an open task."""
    (gen,) = task.programs[0].find("generate")
    if gen.get("constraint") != "trie":
        return None
    answers = list(gen.get("answers") or ())
    if not answers and train is not None:
        column = list(task.get("targets", ()))[-1]
        answers = sorted({str(train.raw(i).get(column)) for i in range(len(train))})
    return answers


class Scorer:
    """How one task is decoded and scored, read from its IR."""

    def __init__(self, task: ir.TaskIR, vocab, answers: list[str] | None = None, **generation):
        self.task, self.vocab = task, vocab
        self.name = task.get("metric")
        self.metric = METRICS.get(self.name)
        program = task.programs[0]
        (gen,) = program.find("generate")
        (self.post,) = program.find("postprocess")
        self.reference = References(task)
        trie = Trie(vocab.encode(a) for a in answers) if answers else None
        self.generation = GenerateConfig.from_op(gen, trie, **generation)
        if task.get("output") == "box":  # a box is four bin tokens: nothing else may be generated
            self.generation = self.generation.with_(vocabulary=tuple(vocab.bin_ids))
        if self.name == "sql_execution" and not self.reference.databases:
            raise NotSupportedYet(f"`metric = sql_execution` without a database (task `{task.task}`)",
                                  help="give the instruction a `[STRUCT:db,preprocess=database]` slot, or choose "
                                       "another metric")

    def output(self, tokens: list[int], meta: dict):
        return decode(tokens, self.vocab, self.post, meta)
