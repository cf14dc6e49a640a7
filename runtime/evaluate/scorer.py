"""How one task is decoded and scored, read from its IR: the generator's settings (its
`generate` op), the postprocessor (its `postprocess` op), the references its metric compares
with and the metric.  Validation, `ofac eval` and inference share it.  No torch."""
from __future__ import annotations

import functools
import json
from dataclasses import replace

from ofac import ir

from ..errors import NotSupportedYet
from ..generate import closed_set_attrs, generation
from ..generate.search import Trie
from ..preprocess.box import parse_box
from ..registry import attributes
from .metrics import METRICS
from .postprocess import POSTPROCESS


def _listed(value) -> list:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [v for v in value.split("|") if v.strip()] if "|" in value else [value]
        return parsed if isinstance(parsed, list) else [parsed]
    return list(value) if value is not None else []


def reference_answers(value):
    """A `references` cell: a list of answers, OFASys' VQA form `conf|!+answer&&...` as a dict
    {answer: confidence}, `&&`-separated answers, or a JSON list; else one answer."""
    if isinstance(value, (list, tuple, dict)):
        return value if isinstance(value, dict) else [str(v) for v in value]
    text = str(value)
    if "|!+" in text:
        pairs = (part.split("|!+", 1) for part in text.split("&&") if "|!+" in part)
        return {answer.strip(): float(conf) for conf, answer in pairs}
    if "&&" in text:
        return [part.strip() for part in text.split("&&") if part.strip()]
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return [text]
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    return [text]


def target_cleaner(task: ir.TaskIR):
    """How the task's text target is cleaned before it is tokenized (`uncased`, `no_punctuation`
    on its slot): the model learns to write the cleaned text, so its candidate answers and the
    references it is scored against are cleaned alike.  -> text -> text."""
    from ..preprocess.text import clean

    program = task.programs[0]
    column = list(task.get("targets", ()) or [None])[-1]
    for op in program.of_kind("preprocess"):
        if op.name not in ("text", "text_phone") or not op.args:
            continue
        read = program.arg(op)
        if read.get("side") == "decoder" and read.get("column") == column:
            attrs = attributes(op)
            if attrs.get("uncased") or attrs.get("no_punctuation"):
                return lambda text: clean(text, attrs)
    return lambda text: text


def cleaned_answers(task: ir.TaskIR, answers) -> list[str]:
    """Candidate answers cleaned as the task's target is, duplicates dropped, in order."""
    clean = target_cleaner(task)
    return list(dict.fromkeys(clean(str(a)) for a in answers))


def _cleaned_references(refs, cleaner):
    if isinstance(refs, dict):
        out: dict = {}
        for answer, conf in refs.items():
            key = cleaner(answer)
            out[key] = max(conf, out.get(key, conf))
        return out
    return [cleaner(r) for r in refs]


class References:
    """What a task's metric compares a prediction with, read from a sample's meta."""

    def __init__(self, task: ir.TaskIR):
        self.output, self.metric = task.output, task.get("metric")
        self.references = task.get("references")
        self.targets = list(task.get("targets", ()))
        self.clean = target_cleaner(task)
        first = task.programs[0]
        reads = [op for op in first.of_kind("read") if op.get("side") == "decoder"]
        self.box_columns = [op.get("column") for op in reads if op.get("modality") == "BOX"]
        self.label_columns = [op.get("column") for op in reads if op.get("modality") == "TEXT"
                              and op.get("column") in self.targets]
        self.databases = [first.arg(op).get("column") for op in first.of_kind("preprocess") if op.name == "database"]

    def __call__(self, meta: dict):
        targets = meta["targets"]
        if self.output == "image":  # the target image's pixels, as the preprocessor read them
            return meta.get("pixels", {}).get(self.targets[-1])
        if self.output == "waveform":  # the target speech (waveform, rate), as the preprocessor read it
            return meta.get("waveforms", {}).get(self.targets[-1])
        if self.output == "motion":  # the target clip's (features, known frames), as the preprocessor read it
            return meta.get("motions", {}).get(self.targets[-1])
        if self.output == "box":
            return parse_box(targets.get(self.box_columns[0]))
        if self.output == "box_text":
            boxes = [parse_box(b) for b in _listed(targets.get(self.box_columns[0]))]
            labels = _listed(targets.get(self.label_columns[0])) if self.label_columns else [""] * len(boxes)
            return list(zip(boxes, (str(x) for x in labels)))
        if self.references is not None:
            return _cleaned_references(reference_answers(meta.get("references")), self.clean)
        text = self.clean(str(targets.get(self.targets[-1])))
        if self.metric == "sql_execution":
            return text, (meta.get("databases") or {}).get(self.databases[0]) if self.databases else None
        return text


def closed_set(task: ir.TaskIR, train=None) -> list[str] | None:
    """The candidate answers of a closed-set task: its `answers`, else every training target,
    cleaned as the target is (`uncased`, `no_punctuation`); None for an open task."""
    constrained, answers = closed_set_attrs(task.programs[0].only("generate"))
    if not constrained:
        return None
    answers = cleaned_answers(task, answers)
    if not answers and train is not None:
        column = list(task.get("targets", ()))[-1]
        rows = (train.readable(i) for i in range(len(train)))
        answers = sorted(cleaned_answers(task, (row.get(column) for row in rows if row is not None)))
    return answers


def answer_trie(task: ir.TaskIR, vocab, answers) -> Trie | None:
    """The token sequences of a closed set's answers: BPE tokens, or for a `preprocess=category`
    target each class's one token (an answer that is no class of the run has no sequence)."""
    if not answers:
        return None
    program = task.programs[0]
    category = next((op for op in program.of_kind("preprocess") if op.name == "category"
                     and program.arg(op).get("side") == "decoder"), None)
    if category is None:
        return Trie(vocab.encode(a) for a in answers)
    from ..preprocess.text import label_of

    labels = (vocab.label_ids.get(label_of(a, attributes(category))) for a in answers)
    return Trie([t] for t in labels if t is not None)


class Scorer:
    """How one task is decoded and scored, read from its IR."""

    def __init__(self, task: ir.TaskIR, vocab, answers: list[str] | None = None, resources: dict | None = None,
                 **generate):
        """`resources`: the run's learned codecs, for postprocessors that decode with one (images)."""
        self.task, self.vocab = task, vocab
        self.name = task.get("metric")
        self.metric = METRICS.get(self.name)
        if self.name == "f_measure":
            self.metric = functools.partial(self.metric, positive=task.get("positive"))
        program = task.programs[0]
        post = program.only("postprocess")
        impl = POSTPROCESS.check(post)
        self.decode, self.post_attrs = impl.run, attributes(post)
        needs = impl.extra.get("resource")
        if needs is not None:
            found = (resources or {}).get(needs)
            if found is None:
                raise NotSupportedYet(f"{needs} outputs without the run's {needs} tokenizer (task `{task.task}`)",
                                      help="load the model from its run directory or export folder, which holds it")
            self.decode = functools.partial(impl.run, resource=found)
        self.reference = References(task)
        self.trie = answer_trie(task, vocab, answers)
        # a constrained loss is validated constrained too (its teacher-forced numbers)
        self.teacher_trie = self.trie if attributes(program.only("loss")).get("constrained") else None
        self.generation = generation(program.only("generate"), self.trie, **generate)
        if impl.name == "motion":  # sample at the run's clip length, with its rotations kept proper
            codec = resources["motion"]
            self.generation = replace(self.generation, rectify=codec.rectify, length=self.generation.length or
                                      codec.length)
        if "vocabulary" in impl.extra:  # e.g. a box is four bin tokens: nothing else may be generated
            self.generation = self.generation.with_(vocabulary=impl.extra["vocabulary"](vocab))
        if self.name == "sql_execution" and not self.reference.databases:
            raise NotSupportedYet(f"`metric = sql_execution` without a database (task `{task.task}`)",
                                  help="give the instruction a `[STRUCT:db,preprocess=database]` slot, or choose "
                                       "another metric")

    def output(self, tokens: list[int], meta: dict):
        return self.decode(tokens, self.vocab, self.post_attrs, meta)
