"""Answering instructions from one checkpoint: `OFASys.from_pretrained(run_dir)` (= `ofac.load`
on a run directory), `.inference(...)`, and `ofac infer`.

A task name selects the IR the model was trained with (programs.json); any other text is
compiled as a new instruction by the same compiler, with the run's model settings, and checked
against what this model has (its modality adaptors, its box bins).  Rows run through the same
TaskRunner as training (split `test`: decoder columns are predicted, not read), generation
follows the task's `generate` op unless overridden, and postprocess ops turn tokens into
outputs."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ofac import compile_instruction, ir
from ofac.diagnostics import Diagnostic, Severity

from .checkpoint import CheckpointError, latest_checkpoint, load_weights, read_json
from .collate import collate
from .data.dataset import TaskData
from .data.media import load_image
from .data.sources import open_source
from .errors import DataError, RunError
from .evaluate import Scorer, samples_of
from .execute import TaskRunner
from .generate import generate
from .model import GeneralistModel, ModelConfig
from .tokenizer import Vocab


class InferenceError(RunError):
    """An instruction this checkpoint cannot answer; carries the diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self._all = list(diagnostics)
        self.diagnostic = diagnostics[0]
        super().__init__("\n".join(d.message + (f"\n  help: {d.help}" if d.help else "") for d in diagnostics))

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return self._all


@dataclass
class Output:
    """One answer.  `text`: the decoded text (for boxes, their labels joined by ", ");
    `boxes`: [x0, y0, x1, y1] in pixels of the original image; `labels`: one per box when the
    target pairs boxes with text; `score`: the length-normalized log-probability; `n_best`: every
    hypothesis, best first (this one included); `scores`: their scores."""

    text: str | None = None
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    score: float = float("-inf")
    n_best: list["Output"] = field(default_factory=list, repr=False)
    image: object = field(default=None, repr=False)  # the input image, for save_box
    base_dir: Path | None = field(default=None, repr=False)

    @property
    def scores(self) -> list[float]:
        return [o.score for o in self.n_best]

    def to_dict(self, n_best: bool = True) -> dict:
        out = {"text": self.text, "score": self.score}
        if self.boxes:
            out["boxes"] = self.boxes
        if self.labels:
            out["labels"] = self.labels
        if n_best and len(self.n_best) > 1:
            out["n_best"] = [o.to_dict(n_best=False) for o in self.n_best]
        return out

    def save_box(self, path: str | Path, color: str = "red", width: int = 3) -> Path:
        """Draw the predicted boxes (and labels) on the input image; write it to `path`."""
        from PIL import ImageDraw

        if self.image is None:
            raise ValueError("this output has no input image to draw on (the instruction reads no IMAGE)")
        image = load_image(self.image, self.base_dir).convert("RGB")
        draw = ImageDraw.Draw(image)
        for k, box in enumerate(self.boxes):
            draw.rectangle(box, outline=color, width=width)
            if k < len(self.labels) and self.labels[k]:
                draw.text((box[0] + width + 1, box[1] + width), self.labels[k], fill=color)
        path = Path(path)
        image.save(path)
        return path


def _output(value, score: float) -> Output:
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # (box, label) objects
        labels = [label for _, label in value]
        return Output(", ".join(lb for lb in labels if lb), [list(b) for b, _ in value], labels, score)
    if isinstance(value, list) or value is None:  # one box (None: not four bin tokens)
        return Output(None, [list(value)] if value else [], [], score)
    return Output(value, [], [], score)


class OFASys:
    """A trained generalist model: every task of its run, and new instructions it can serve."""

    def __init__(self, run_dir: Path, model: GeneralistModel, vocab: Vocab, config: dict,
                 programs: dict[str, ir.TaskIR], answers: dict[str, list[str]], weights: Path):
        self.run_dir, self.model, self.vocab, self.config = run_dir, model, vocab, config
        self.programs, self.answers, self.weights = programs, answers, weights
        self.device = torch.device("cpu")
        self._compiled: dict[str, ir.TaskIR] = {}
        self._scorers: dict[tuple, Scorer] = {}
        self._runners: dict[int, TaskRunner] = {}  # by id of a TaskIR this object keeps

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, checkpoint: str = "best", device: str | None = None,
                        backend: str = "torch") -> "OFASys":
        """`checkpoint`: `best` (the best validation; the latest checkpoint when the run never
        validated), `latest`, or a checkpoint folder.  `backend="onnx"`: `run_dir` is a folder
        `ofac export` wrote (or a run directory holding one in `onnx/`), run by ONNX Runtime."""
        run_dir = Path(run_dir)
        if backend == "onnx":
            from .export import load_export

            folder = run_dir / "onnx" if (run_dir / "onnx" / "manifest.json").exists() else run_dir
            model, config, programs, answers, vocab = load_export(folder)
            return cls(folder, model, vocab, config, programs, answers, folder / "manifest.json")
        if backend != "torch":
            raise ValueError(f"unknown backend {backend!r} (torch or onnx)")
        if not (run_dir / "config.json").exists():
            raise CheckpointError("E0110", "not a run directory (no config.json)", run_dir,
                                  help="give the folder `ofac run` wrote (train { out })")
        config = read_json(run_dir / "config.json")
        weights = _weights_of(run_dir, checkpoint)
        try:
            vocab = Vocab.load(run_dir / "tokenizer.json")
        except Exception as err:  # tokenizers raises its own exception type
            raise CheckpointError("E0111", f"unreadable tokenizer: {err}", run_dir / "tokenizer.json") from None
        try:
            programs = {t.task: t for t in map(ir.from_json, read_json(run_dir / "programs.json"))}
        except ir.IRError as err:
            raise CheckpointError("E0111", f"unreadable IR: {err}", run_dir / "programs.json") from None
        answers = read_json(run_dir / "answers.json") if (run_dir / "answers.json").exists() else {}
        cfg = config["model"]
        model = GeneralistModel(ModelConfig(**{**cfg, "adaptors": tuple(cfg["adaptors"])}))
        load_weights(model, weights)
        model.eval()
        out = cls(run_dir, model, vocab, config, programs, answers, weights)
        return out.to(device) if device else out

    def to(self, device) -> "OFASys":
        from .trainer import resolve_device

        self.device = resolve_device(str(device))
        if isinstance(self.model, torch.nn.Module):
            self.model.to(self.device)
        elif self.device.type != "cpu":
            raise ValueError("the onnx backend runs on the CPU (ONNX Runtime's CPU provider)")
        return self

    @property
    def tasks(self) -> list[str]:
        return list(self.programs)

    def __repr__(self) -> str:
        backend = "torch" if isinstance(self.model, torch.nn.Module) else "onnx"
        return f"OFASys({self.run_dir}, tasks={self.tasks}, backend={backend}, {self.weights.parent.name})"

    # ------------------------------------------------------------------ instructions

    def task(self, instruction: str) -> ir.TaskIR:
        """The IR of a trained task by name, or of a new instruction compiled for this model."""
        if instruction in self.programs:
            return self.programs[instruction]
        if instruction not in self._compiled:
            block = self.config.get("model_block") or {}
            task, diags = compile_instruction(instruction, task="instruction",
                                              model=tuple((k, v) for k, v in block.items() if v is not None))
            errors = [d for d in diags if d.severity is Severity.ERROR]
            if task is None or errors:
                raise InferenceError(errors or diags)
            self._check(task)
            self._compiled[instruction] = task
        return self._compiled[instruction]

    def _check(self, task: ir.TaskIR) -> None:
        """Can this model serve the instruction?  Its encoder adaptors and its box bins."""
        have = set(self.model.adaptors)  # a ModuleDict's names, or the exported encoders' inputs
        problems = []
        for op in task.programs[0].ops:
            if op.family == "adapt" and op.get("side") == "encoder":
                name = op.op.split(".", 1)[1]
                if name not in have:
                    problems.append(Diagnostic(
                        "E0118", Severity.ERROR, f"this model has no `{name}` adaptor: it was trained on "
                        f"{', '.join(sorted(have))} inputs only (slot at {op.span})", None,
                        help=f"use an input modality the model knows, or train it on a task that uses `{name}`"))
            if op.op in ("preprocess.box", "postprocess.box", "postprocess.box_text"):
                bins = op.get("bins")
                if bins and bins > len(self.vocab.bin_ids):
                    problems.append(Diagnostic(
                        "E0118", Severity.ERROR, f"the instruction quantizes boxes to {bins} bins; this model's "
                        f"vocabulary has {len(self.vocab.bin_ids)} (slot at {op.span})", None,
                        help="leave box_bins at the run's value"))
        if problems:
            raise InferenceError(problems)

    # ------------------------------------------------------------------ answering

    def inference(self, instruction: str, data: dict | list[dict], beam_size: int | None = None,
                  max_len: int | None = None, min_len: int | None = None, len_penalty: float | None = None,
                  no_repeat_ngram_size: int | None = None, sampling: bool | None = None, top_k: int | None = None,
                  top_p: float | None = None, temperature: float | None = None, closed_set: list[str] | None = None,
                  batch_size: int = 16, seed: int | None = None, base_dir: str | Path | None = None,
                  progress=None):
        """Answer `instruction` (a task name or an instruction) for one row (a dict: returns one
        Output) or many (a list: returns a list).  Media paths resolve against `base_dir`
        (default: the current directory).  `progress(n)` is called with rows done."""
        single = isinstance(data, dict)
        rows = [data] if single else list(data)
        task = self.task(instruction)
        if hasattr(self.model, "encoder_for"):  # the onnx backend: is there a graph for these inputs?
            from .export import encoder_inputs

            self.model.encoder_for(encoder_inputs(task))
        # a closed set given here constrains any text output; else the task's own (from training)
        answers = closed_set if closed_set is not None else self.answers.get(task.task)
        settings = dict(beam=beam_size, max_len=max_len, min_len=min_len, len_penalty=len_penalty,
                        no_repeat_ngram_size=no_repeat_ngram_size, sampling=sampling, top_k=top_k, top_p=top_p,
                        temperature=temperature, seed=seed)
        key = (id(task), tuple(answers) if answers else None, tuple(settings.items()))
        if key not in self._scorers:  # a closed set's trie and the task's plan are built once
            if len(self._scorers) > 64:
                self._scorers.clear()
            self._scorers[key] = Scorer(task, self.vocab, answers, **settings)
        scorer = self._scorers[key]
        if id(task) not in self._runners:
            self._runners[id(task)] = TaskRunner(task, self.vocab, "test")
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        data_ = TaskData(self._runners[id(task)], [open_source(rows, base_dir=base)])
        image_column = next((op.get("column") for op in task.programs[0].ops
                             if op.op == "read.column" and op.get("modality") == "IMAGE"), None)
        outputs: list[Output] = []
        with torch.no_grad():
            for lo in range(0, len(rows), batch_size):
                hi = min(lo + batch_size, len(rows))
                batch = collate(samples_of(data_, lo, hi)).to(self.device)
                for i, (hyps, meta) in enumerate(zip(generate(self.model, batch, scorer.generation), batch.meta)):
                    n_best = [_output(scorer.output(h.tokens, meta), h.score) for h in hyps] or [Output()]
                    best = n_best[0]
                    best.n_best = n_best
                    if image_column is not None:
                        best.image, best.base_dir = rows[lo + i].get(image_column), base
                    outputs.append(best)
                if progress is not None:
                    progress(hi)
        return outputs[0] if single else outputs


def _weights_of(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint == "best" and (run_dir / "checkpoints" / "best" / "model.safetensors").exists():
        return run_dir / "checkpoints" / "best" / "model.safetensors"
    if checkpoint in ("best", "latest"):
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise CheckpointError("E0110", "the run directory holds no checkpoint yet", run_dir,
                                  help="train it with `ofac run` first")
        return latest / "model.safetensors"
    path = Path(checkpoint)
    path = path if path.name == "model.safetensors" else path / "model.safetensors"
    if not path.exists():
        raise CheckpointError("E0110", "no model.safetensors in the checkpoint", path,
                              help="give `best`, `latest`, or a folder under checkpoints/")
    return path


def read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL / CSV / TSV / Parquet file for `ofac infer --input`."""
    source = open_source(str(path))
    rows = []
    for j in range(len(source)):
        try:
            rows.append(source.row(j))
        except DataError:
            raise
        except (ValueError, json.JSONDecodeError) as err:
            raise DataError("E0102", f"malformed row: {err}", file=str(path), row=j + 1) from None
    return rows


def evaluate_run(run_dir: str | Path, task_file: str | Path | None = None, split: str = "valid",
                 checkpoint: str = "best", device: str | None = None, out: str | Path | None = None,
                 progress=None) -> dict[str, dict]:
    """`ofac eval`: score a trained model on a split of its tasks' data, with the IR it was
    trained with and the trainer's own scoring code.  Data files come from `task_file` (default:
    the task file that started the run).  Writes each task's predictions to
    OUT/<task>.jsonl (default RUN_DIR/eval/<split>/).  `progress(done, total)` follows the rows.
    -> {task: scores}."""
    from ofac import compile_file

    from .evaluate import evaluate
    from .preview import task_data
    from .spec import as_spec

    system = OFASys.from_pretrained(run_dir, checkpoint, device)
    source = Path(task_file) if task_file is not None else Path(system.config.get("source", ""))
    if not source.is_file():
        raise CheckpointError("E0110", f"the run's task file `{source}` is not there", Path(run_dir),
                              help="give the task file: ofac eval RUN_DIR FILE.ofa")
    compiled, diags = compile_file(source)
    if compiled is None:
        raise InferenceError([d for d in diags if d.severity is Severity.ERROR])
    spec = as_spec(compiled, source.parent)
    spec.tasks = [t for t in spec.tasks if t.name in system.programs]
    for t in spec.tasks:
        t.ir = system.programs[t.name]  # the IR the model was trained with
    datas = task_data(spec, None, split, system.vocab)
    if not datas:
        raise DataError("E0101", f"no task of the run has `{split}` data", file=str(source),
                        help=f"add `{split} = FILE` to the tasks, or choose another --split")
    folder = Path(out) if out is not None else Path(run_dir) / "eval" / split
    folder.mkdir(parents=True, exist_ok=True)
    results, done, total = {}, 0, sum(len(d) for d in datas.values())
    for name, data in datas.items():
        scorer = Scorer(system.programs[name], system.vocab, system.answers.get(name))
        report = None if progress is None else (lambda n, base=done: progress(base + n, total))
        result = evaluate(system.model, data, scorer, system.device, keep=True, progress=report)
        done += len(data)
        results[name] = result.scores
        tmp = folder / f".{name}.jsonl.tmp"
        with tmp.open("w") as f:
            for p in result.predictions:
                f.write(json.dumps(p, default=_jsonable) + "\n")
        tmp.replace(folder / f"{name}.jsonl")
    return results


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
