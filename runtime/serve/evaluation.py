"""`ofac eval`: a trained model scored on a split of its tasks' data, with the IR it was
trained with and the trainer's own scoring code; every prediction written to JSONL."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ofac.compiler import compile_file
from ofac.diagnostics import Severity

from ..data.tasks import as_definition, task_data
from ..errors import DataError
from ..evaluate.evaluation import evaluate
from ..evaluate.scorer import Scorer
from ..store.files import CheckpointError
from .answer import InferenceError, OFASys


def evaluate_run(run_dir: str | Path, task_file: str | Path | None = None, split: str = "valid",
                 checkpoint: str = "best", device: str | None = None, out: str | Path | None = None,
                 progress=None) -> dict[str, dict]:
    """Score the run's model on `split`.  Data files come from `task_file` (default: the task file
    that started the run).  Writes each task's predictions to OUT/<task>.jsonl (default
    RUN_DIR/eval/<split>/).  `progress(done, total)` follows the rows.  -> {task: scores}."""
    system = OFASys.from_pretrained(run_dir, checkpoint, device)
    source = Path(task_file) if task_file is not None else Path(system.config.get("source", ""))
    if not source.is_file():
        raise CheckpointError("E0110", f"the run's task file `{source}` is not there", Path(run_dir),
                              help="give the task file: ofac eval RUN_DIR FILE.ofa")
    compiled, diags = compile_file(source)
    if compiled is None:
        raise InferenceError([d for d in diags if d.severity is Severity.ERROR])
    definition = as_definition(compiled, source.parent)
    definition.tasks = [t for t in definition.tasks if t.name in system.programs]
    for t in definition.tasks:
        t.ir = system.programs[t.name]  # the IR the model was trained with
    datas = task_data(definition, split, system.vocab)
    if not datas:
        raise DataError("E0101", f"no task of the run has `{split}` data", file=str(source),
                        help=f"add `{split} = FILE` to the tasks, or choose another --split")
    folder = Path(out) if out is not None else Path(run_dir) / "eval" / split
    folder.mkdir(parents=True, exist_ok=True)
    results, done, total = {}, 0, sum(len(d) for d in datas.values())
    for name, data in datas.items():
        scorer = Scorer(system.programs[name], system.vocab, system.answers.get(name))
        report = None if progress is None else (lambda n, base=done: progress(base + n, total))
        result = evaluate(system.backend.model, data, scorer, system.device, keep=True, progress=report)
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


def shown_predictions(folder: Path, tasks: list[str], n: int) -> list[str]:
    """The first `n` predictions of each task against their references, as rich markup lines."""
    from rich.markup import escape

    from ..evaluate.metrics import normalize

    def brief(value) -> str:
        if isinstance(value, list):  # boxes, lists of (box, label), reference answers
            return "[" + ", ".join(brief(v) for v in value) + "]"
        if isinstance(value, dict):  # reference answers with their confidences
            return "{" + ", ".join(f"{a}: {brief(c)}" for a, c in value.items()) + "}"
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        return text if len(text) <= 70 else text[:67] + "..."

    lines = []
    for task in tasks:
        for line in (folder / f"{task}.jsonl").read_text().splitlines()[:n]:
            p = json.loads(line)
            pred, ref = p["prediction"], p["reference"]
            if isinstance(pred, str) and (isinstance(ref, dict) or (isinstance(ref, list) and ref and all(
                    isinstance(r, str) for r in ref))):  # several reference answers (`references =`)
                mark = "[green]∈[/green]" if normalize(pred) in {normalize(r) for r in ref} else "[red]∉[/red]"
            else:
                mark = "[green]=[/green]" if pred == ref else "[red]≠[/red]"
            lines.append(f"{task} row {p['row']}: {escape(brief(p['prediction']))} {mark} "
                         f"{escape(brief(p['reference']))}")
    return lines
