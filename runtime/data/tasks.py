"""What a run is made of, however it was declared: each task's IR, settings and data per split,
plus the model and train settings; and each task's rows of one split.  `ofac run FILE` builds a
definition from a task file; the Python API (`Trainer().fit(model=..., tasks=[...])`) from Task
objects."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ofac.datafile import Dataset, split_paths
from ofac.ir import TaskIR
from ofac.settings import EXPORT, IMAGE_TOKENIZER, MODEL, TASK, TRAIN

from ..exec.run import TaskRunner
from .rows import TaskData
from .sources import open_source


@dataclass
class TaskDefinition:
    ir: TaskIR
    settings: dict
    data: dict[str, list] = field(default_factory=dict)  # split -> paths or in-memory datasets

    @property
    def name(self) -> str:
        return self.ir.task

    def files(self, split: str) -> list:
        """The split's files (or in-memory datasets), each once."""
        return split_paths(self.data.get(split, ()))[0]

    def datasets(self, split: str) -> list[Dataset]:
        """The split's datasets (OFASys' `a,b ||| c`), the training ones with their sample ratios."""
        found = split_paths(self.data.get(split, ()))[1]
        ratios = self.settings.get("sample_ratios") or () if split == "train" else ()
        if ratios and len(ratios) != len(found):
            raise ValueError(f"task `{self.name}`: {len(ratios)} sample_ratios for {len(found)} training datasets; "
                             "give one per `|||` part of its training paths")
        return [replace(d, ratio=r) for d, r in zip(found, ratios)] if ratios else found


@dataclass
class RunDefinition:
    tasks: list[TaskDefinition]
    model: dict
    train: dict
    source: str = "<api>"
    base_dir: Path = Path(".")
    export: dict = field(default_factory=dict)  # the export block: `ofac export`'s defaults
    image_tokenizer: dict = field(default_factory=lambda: defaults(IMAGE_TOKENIZER))  # stage 0 of image outputs

    def task(self, name: str) -> TaskIR:
        return next(t.ir for t in self.tasks if t.name == name)

    @property
    def irs(self) -> list[TaskIR]:
        return [t.ir for t in self.tasks]


def defaults(schema) -> dict:
    return {s.name: s.default for s in schema.settings if s.default is not None}


def as_definition(run, base_dir: Path | None = None) -> RunDefinition:
    """A RunDefinition from a CompiledFile (data paths relative to `base_dir`, default the file's
    folder) or a RunDefinition."""
    if isinstance(run, RunDefinition):
        return run
    tasks = []
    for checked, ir in zip(run.checked.tasks, run.tasks):
        settings = {**defaults(TASK), **dict(checked.settings)}
        data = {split: list(settings.get(split, ())) for split in ("train", "valid", "test")}
        tasks.append(TaskDefinition(ir, settings, {k: v for k, v in data.items() if v}))
    return RunDefinition(tasks, {**defaults(MODEL), **dict(run.checked.model)},
                         {**defaults(TRAIN), **dict(run.checked.train)}, run.path,
                         Path(base_dir) if base_dir is not None else Path(run.path).parent,
                         {**defaults(EXPORT), **dict(run.checked.export)},
                         {**defaults(IMAGE_TOKENIZER), **dict(run.checked.image_tokenizer)})


def task_data(run, split: str, vocab, resources: dict | None = None) -> dict[str, TaskData]:
    """Each task's rows for one split (tasks without data for it are left out); `resources`: the
    run's learned codecs (`exec.run.TaskRunner`)."""
    run = as_definition(run)
    out = {}
    for task in run.tasks:
        items = task.files(split)
        if items:
            columns = task.settings.get("columns", ())
            sources = [open_source(d, columns, run.base_dir) for d in items]
            runner = TaskRunner(task.ir, vocab, split, resources=resources)
            out[task.name] = TaskData(runner, sources, task.settings.get("on_error", "fail"), task.datasets(split))
    return out
