"""The run directory: what `ofac run` writes once at the start, and what every later reader
(a resumed run, `ofac infer`/`eval`/`export`, an export folder's torch-free runtime) reads back.

    RUN/config.json       model config, tasks, settings, ofac version (written last: its presence
                          means the setup is complete)
    RUN/tokenizer.json    the run's vocabulary
    RUN/programs.json     the IR of every task
    RUN/answers.json      each closed-set task's candidate answers
    RUN/tokenizers/image/ the image tokenizer of image outputs (see codec/tokenizer.py)
    RUN/metrics.jsonl     one JSON object per logged step / validation
    RUN/checkpoints/      see checkpoint.py

An export folder holds the same run files beside its graphs.  No torch here."""
from __future__ import annotations

import json
from pathlib import Path

from ofac import ir

from ..vocab.tokenizer import Vocab
from .files import CheckpointError, read_json, write_json


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def has_setup(self) -> bool:
        return (self.path / "config.json").exists()

    def config(self) -> dict:
        return read_json(self.path / "config.json")

    def vocab(self) -> Vocab:
        path = self.path / "tokenizer.json"
        try:
            return Vocab.load(path)
        except Exception as err:  # the tokenizers package raises its own exception type
            raise CheckpointError("E0111", f"unreadable tokenizer: {err}", path) from None

    def programs(self) -> dict[str, ir.TaskIR]:
        try:
            return {t.task: t for t in map(ir.from_json, read_json(self.path / "programs.json"))}
        except ir.IRError as err:
            raise CheckpointError("E0111", f"unreadable IR: {err}", self.path / "programs.json") from None

    def answers(self) -> dict[str, list[str]]:
        return read_json(self.path / "answers.json") if (self.path / "answers.json").exists() else {}

    def check_new(self, latest: Path | None) -> None:
        """A new run may not start where one already is (nothing is ever overwritten)."""
        if latest is not None or self.has_setup:
            raise CheckpointError("E0117", "the run directory already holds a run", self.path,
                                  help="add --resume to continue it, or give another --out; nothing was overwritten")

    def check_resumable(self, latest: Path | None) -> None:
        if latest is None:
            raise CheckpointError("E0115", "nothing to resume: no checkpoint in the run directory", self.path,
                                  help="drop --resume to start a new run")

    def check_same_run(self, config: dict) -> dict:
        """-> the saved config, after checking the run was started with the same model and tasks
        as `config` (compared in JSON form, as saved)."""
        saved = self.config()
        config = json.loads(json.dumps(config))
        if saved["model"] != config["model"] or saved["tasks"] != config["tasks"]:
            raise CheckpointError("E0116", "the run directory belongs to another configuration (model or tasks "
                                  "differ)", self.path, help="resume with the task file that started this run, "
                                  "or give a new --out")
        return saved

    def append_metrics(self, record: dict) -> None:
        with (self.path / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def write_setup(self, vocab: Vocab, tasks: list[ir.TaskIR], answers: dict[str, list[str]], config: dict) -> None:
        """Written once the whole setup has succeeded, so a failed start leaves nothing; each
        file atomically, config.json last."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / ".tokenizer.json.tmp"
        vocab.save(tmp)
        tmp.replace(self.path / "tokenizer.json")
        write_json(self.path / "programs.json", [ir.to_json(t) for t in tasks])
        write_json(self.path / "answers.json", answers)
        write_json(self.path / "config.json", config)
