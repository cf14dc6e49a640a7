"""The OFASys-style Python API:

    from ofac import Task, Trainer, GeneralistModel
    task = Task(name="caption", instruction="[IMAGE:img] what does the image describe? -> [TEXT:cap]",
                micro_batch_size=4)
    task.add_dataset(rows_or_path_or_hf_dataset, "train")
    model = GeneralistModel()
    Trainer(steps=1000).fit(model=model, tasks=[task])   # the same run directory as `ofac run`

Instructions are compiled when a Task is made (a mistake raises CompileError with every
diagnostic); settings are checked against the same schema as `.ofa` files.  This module and the
command line are the only parts of `ofac` that use the runtime.  Importing it imports no torch:
the training recipe does, when `fit` starts it, and so does the PyTorch backend of `OFASys`
(the ONNX one never does)."""
from __future__ import annotations

from pathlib import Path

from .compiler import compile_instruction
from .compiler import load as load_task_file
from .errors import CompileError
from .runtime.data.tasks import RunDefinition, TaskDefinition, defaults
from .runtime.serve.answer import OFASys
from .settings import IMAGE_TOKENIZER, MODEL, TASK, TRAIN, coerce

__all__ = ["GeneralistModel", "OFASys", "Task", "Trainer", "load"]

SPLITS = ("train", "valid", "test")


class Task:
    def __init__(self, name: str, instruction: str, micro_batch_size: int = 8, **settings):
        ir, diags = compile_instruction(instruction, task=name, name=f"<task {name}>")
        if ir is None:
            raise CompileError(diags)
        self.name, self.instruction, self.ir = name, instruction, ir
        self.warnings = [d for d in diags if not d.is_error]
        given = {"micro_batch_size": micro_batch_size, **settings}
        for split in SPLITS:
            if split in given:
                raise ValueError(f"give data with task.add_dataset(data, {split!r}), not as a `{split}` setting")
        self.settings = {k: coerce(TASK, k, v) for k, v in given.items()}
        self.datasets: dict[str, list] = {}

    def add_dataset(self, dataset, split: str = "train") -> "Task":
        """A path (JSONL/CSV/TSV/Parquet), a list of dicts, a torch Dataset or a datasets.Dataset."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self.datasets.setdefault(split, []).append(dataset)
        return self

    def add_train_dataset(self, dataset) -> "Task":
        return self.add_dataset(dataset, "train")

    def add_valid_dataset(self, dataset) -> "Task":
        return self.add_dataset(dataset, "valid")

    def add_test_dataset(self, dataset) -> "Task":
        return self.add_dataset(dataset, "test")

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {self.instruction!r})"


class GeneralistModel:
    """The model's settings (`preset` and overrides, as in a `model { }` block).  The network is
    built by `Trainer.fit`, once the run's vocabulary is known; `run_dir` then holds it."""

    def __init__(self, preset: str = "tiny", **overrides):
        self.settings = {k: coerce(MODEL, k, v) for k, v in {"preset": preset, **overrides}.items()}
        self.run_dir: Path | None = None


class Trainer:
    def __init__(self, image_tokenizer: dict | None = None, **settings):
        """Any `train { }` setting: steps, lr, warmup, schedule, mixing, out, device, ...;
        `image_tokenizer`: the `image_tokenizer { }` block's settings (grid, codes, steps, path,
        ...) for tasks that generate images."""
        self.settings = {k: coerce(TRAIN, k, v) for k, v in settings.items()}
        self.image_tokenizer = {k: coerce(IMAGE_TOKENIZER, k, v) for k, v in (image_tokenizer or {}).items()}

    def fit(self, model: GeneralistModel, tasks: list[Task], resume: bool = False):
        """Train `model` on `tasks` into the run directory (`out`); -> the run's result."""
        names = [t.name for t in tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task names must be unique: {', '.join(dupes)}")
        image = {**defaults(IMAGE_TOKENIZER), **self.image_tokenizer}
        if "path" in image:
            image["path"] = str(Path(image["path"]).resolve())
        definitions = [TaskDefinition(self._lowered(t, model), {**defaults(TASK), **t.settings}, dict(t.datasets))
                       for t in tasks]
        run = RunDefinition(definitions, {**defaults(MODEL), **model.settings}, {**defaults(TRAIN), **self.settings},
                            source="<python api>", base_dir=Path.cwd(), image_tokenizer=image)
        from .runtime.train.recipe import TrainingRun  # torch, from here on

        result = TrainingRun(run, resume=resume, log=print).fit()
        model.run_dir = result.run_dir
        return result

    def _lowered(self, task: Task, model: GeneralistModel):
        """The task lowered for this run's model and image tokenizer settings (sizes that reach
        preprocessing, as a task file's blocks do); the Task's own IR when there are none."""
        if not model.settings.keys() - {"preset"} and not self.image_tokenizer:
            return task.ir
        ir, diags = compile_instruction(task.instruction, task=task.name, name=f"<task {task.name}>",
                                        model=tuple(model.settings.items()),
                                        image_tokenizer=tuple(self.image_tokenizer.items()))
        if ir is None:
            raise CompileError(diags)
        return ir


def load(path: str | Path, **options):
    """A run directory -> the trained model (`OFASys.from_pretrained(path, **options)`); an
    `ofac export` folder -> the exported model, run by ONNX Runtime without torch; a `.ofa` task
    file -> its compilation (raises CompileError carrying every diagnostic)."""
    path = Path(path)
    if path.is_dir():
        if (path / "manifest.json").exists():  # written by `ofac export`
            options.setdefault("backend", "onnx")
        return OFASys.from_pretrained(path, **options)
    return load_task_file(path)
