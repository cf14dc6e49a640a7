"""What a run is made of, however it was declared: each task's IR, settings and data per split,
plus the model and train settings.  `ofac run FILE` builds one from a task file; the Python API
(`Trainer().fit(model=..., tasks=[...])`) builds one from Task objects."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ofac.ir import TaskIR
from ofac.settings import MODEL, TASK, TRAIN


@dataclass
class TaskSpec:
    ir: TaskIR
    settings: dict
    data: dict[str, list] = field(default_factory=dict)  # split -> paths or in-memory datasets

    @property
    def name(self) -> str:
        return self.ir.task


@dataclass
class RunSpec:
    tasks: list[TaskSpec]
    model: dict
    train: dict
    source: str = "<api>"
    base_dir: Path = Path(".")

    def task(self, name: str) -> TaskIR:
        return next(t.ir for t in self.tasks if t.name == name)

    @property
    def irs(self) -> list[TaskIR]:
        return [t.ir for t in self.tasks]


def defaults(schema) -> dict:
    return {s.name: s.default for s in schema.settings if s.default is not None}


def as_spec(run, base_dir: Path | None = None) -> RunSpec:
    """A RunSpec from a CompiledFile (data paths relative to `base_dir`) or a RunSpec."""
    if isinstance(run, RunSpec):
        return run
    tasks = []
    for checked, ir in zip(run.checked.tasks, run.tasks):
        settings = {**defaults(TASK), **dict(checked.settings)}
        data = {split: list(settings.get(split, ())) for split in ("train", "valid", "test")}
        tasks.append(TaskSpec(ir, settings, {k: v for k, v in data.items() if v}))
    return RunSpec(tasks, {**defaults(MODEL), **dict(run.checked.model)}, {**defaults(TRAIN), **dict(run.checked.train)},
                   run.path, Path(base_dir) if base_dir is not None else Path(run.path).parent)
