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
from pathlib import Path

import numpy as np
import torch

from ofac import ir
from ofac.diagnostics import Severity

from .answer import Answerer, InferenceError, Output, read_rows, read_run_files  # noqa: F401 (re-exported)
from .checkpoint import CheckpointError, latest_checkpoint, load_weights, read_json
from .collate import collate
from .errors import DataError
from .evaluate import Scorer
from .generate import generate
from .model import GeneralistModel, ModelConfig
from .tokenizer import Vocab

__all__ = ["InferenceError", "OFASys", "Output", "evaluate_run", "read_rows"]


class OFASys(Answerer):
    """A trained generalist model run by PyTorch (on the CPU or a GPU)."""

    media = "torch"

    def __init__(self, run_dir: Path, model: GeneralistModel, vocab: Vocab, config: dict,
                 programs: dict[str, ir.TaskIR], answers: dict[str, list[str]], weights: Path):
        super().__init__(run_dir, vocab, config, programs, answers, weights)
        self.model = model
        self.device = torch.device("cpu")

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, checkpoint: str = "best", device: str | None = None,
                        backend: str = "torch") -> Answerer:
        """`checkpoint`: `best` (the best validation; the latest checkpoint when the run never
        validated), `latest`, or a checkpoint folder.  `backend="onnx"`: `run_dir` is a folder
        `ofac export` wrote (or a run directory holding one in `onnx/`), run by ONNX Runtime
        without torch (`ofac.runtime.deploy.Deployed`)."""
        run_dir = Path(run_dir)
        if backend == "onnx":
            from .deploy import load

            system = load(run_dir)
            return system.to(device) if device else system
        if backend != "torch":
            raise ValueError(f"unknown backend {backend!r} (torch or onnx)")
        if not (run_dir / "config.json").exists():
            raise CheckpointError("E0110", "not a run directory (no config.json)", run_dir,
                                  help="give the folder `ofac run` wrote (train { out })")
        config = read_json(run_dir / "config.json")
        weights = _weights_of(run_dir, checkpoint)
        vocab, programs, answers = read_run_files(run_dir)
        cfg = config["model"]
        model = GeneralistModel(ModelConfig.from_dict(cfg))
        load_weights(model, weights)
        model.eval()
        out = cls(run_dir, model, vocab, config, programs, answers, weights)
        return out.to(device) if device else out

    def to(self, device) -> "OFASys":
        from .trainer import resolve_device

        self.device = resolve_device(str(device))
        self.model.to(self.device)
        return self

    def __repr__(self) -> str:
        return f"OFASys({self.run_dir}, tasks={self.tasks}, backend=torch, {self.weights.parent.name})"

    def adaptor_names(self) -> set[str]:
        return set(self.model.adaptors)

    def _answer(self, samples, generation):
        batch = collate(samples).to(self.device)
        return generate(self.model, batch, generation), batch.meta


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
