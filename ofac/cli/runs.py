"""The runtime's commands: `data`, `run`, `infer`, `eval`, `export`, `plot`.  Each imports its
library function when it runs (the runtime needs numpy and, but for the ONNX backend, torch)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .. import compiler
from ..render import summary
from ..settings import TRAIN
from .app import app, choices, console, print_diagnostics

Split = choices("Split", ("train", "valid", "test"))
Device = choices("Device", TRAIN.setting("device").choices)  # exactly what `train { device }` accepts
Precision = choices("Precision", TRAIN.setting("precision").choices)
Parallel = choices("Parallel", TRAIN.setting("parallel").choices)
InferFormat = choices("InferFormat", ("text", "json"))
Backend = choices("Backend", ("torch", "onnx"))


def _compiled(file: Path, what: str, err):
    """The compiled task file, its diagnostics printed; exit 1 when it has errors."""
    compiled, diags = compiler.compile_file(file)
    print_diagnostics(diags, err)
    if compiled is None:
        err.print(f"cannot {what}: {summary(diags)}", style="bold red")
        raise typer.Exit(1) from None
    return compiled


def _value(option):
    return option.value if option is not None else None


@app.command()
def data(
    file: Path = typer.Argument(..., help="A `.ofa` task file."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task.", show_default=False),
    split: Split = typer.Option("train", "--split", "-s", help="Which data split to read."),
    rows: int = typer.Option(2, "--rows", "-n", min=1, help="Rows to show per task."),
    every: bool = typer.Option(False, "--all", help="Decode every row, as training would, and report each bad one."),
) -> None:
    """Run the data path on a few rows and show what the model will see (needs the runtime);
    with --all, decode every row and report every bad one (exit 1 if any)."""
    err = console(stderr=True)
    compiled = _compiled(file, "read the data", err)
    if task is not None and compiled.task(task) is None:
        raise typer.BadParameter(f"no task `{task}` (tasks: {', '.join(t.task for t in compiled.tasks)})",
                                 param_hint="--task")
    from ..runtime.data.preview import preview

    bar = _Progress(err, f"decoding {split.value} rows", least=64) if every else None
    try:
        result = preview(compiled, file.parent, task, split.value, rows, every=every,
                         progress=bar.report if bar else None)
    finally:
        if bar is not None:
            bar.stop()
    print("\n".join(result.lines))
    print_diagnostics(result.diagnostics, err)
    raise typer.Exit(1 if result.diagnostics else 0)


def _forward(**options) -> list[str]:
    """Command-line options, as given, for the processes torchrun starts."""
    out = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        out += [flag] if value is True else [flag, str(getattr(value, "value", value))]
    return out


@app.command()
def run(
    file: Path = typer.Argument(..., help="A `.ofa` task file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: train { out }).",
                                       show_default=False),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Number of updates (default: train { steps }).",
                                        show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the run directory."),
    device: Optional[Device] = typer.Option(None, "--device", help="Where to train (default: train { device }).",
                                            show_default=False),
    precision: Optional[Precision] = typer.Option(None, "--precision", help="fp32, bf16 autocast, or auto.",
                                                  show_default=False),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Training processes, started by torchrun (DDP or FSDP2)."),
    parallel: Optional[Parallel] = typer.Option(None, "--parallel", help="With --nproc: replicate (ddp) or shard "
                                                "(fsdp) the model (default: train { parallel }).", show_default=False),
) -> None:
    """Train one generalist model on every task of the file; Ctrl-C saves a checkpoint."""
    err = console(stderr=True)
    compiled = _compiled(file, "train", err)
    from ..runtime.train.launch import run_file

    relaunch = ["-m", "ofac.cli", "run", str(file)] + _forward(out=out, steps=steps, resume=resume, device=device,
                                                                precision=precision, parallel=parallel)
    raise typer.Exit(run_file(compiled, file.parent, err, nproc=nproc, relaunch=relaunch, out=out, steps=steps,
                              resume=resume, device=_value(device), precision=_value(precision),
                              parallel=_value(parallel), report=lambda diags: print_diagnostics(diags, err)))


class _Progress:
    """A rich progress bar on stderr, shown from the first report of at least `least` items:
    `report(done, total)`; `stop()` when the work is over."""

    def __init__(self, err, what: str, least: int = 0):
        self.err, self.what, self.least, self.bar = err, what, least, None

    def report(self, done: int, total: int) -> None:
        if self.bar is None:
            if total < self.least:
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=self.err, transient=True)
            self.job = self.bar.add_task(self.what, total=total)
            self.bar.start()
        self.bar.update(self.job, completed=done, total=total)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _parse_data(items: list[str]) -> dict:
    row = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"`{item}` is not COLUMN=VALUE", param_hint="--data")
        key, value = item.split("=", 1)
        row[key.strip()] = value
    return row


@app.command()
def infer(
    run_dir: Path = typer.Argument(..., help="A run directory (written by `ofac run`)."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Answer this trained task.", show_default=False),
    instruction: Optional[str] = typer.Option(None, "--instruction", "-i", help="Answer this instruction.",
                                              show_default=False),
    data: List[str] = typer.Option([], "--data", "-d", help="COLUMN=VALUE of one row (repeatable); media "
                                   "values are paths."),
    input: Optional[Path] = typer.Option(None, "--input", help="Rows to answer (JSONL, CSV, TSV, Parquet).",
                                         show_default=False),
    beam: Optional[int] = typer.Option(None, "--beam", min=1, help="Beam size (default: the task's).",
                                       show_default=False),
    max_len: Optional[int] = typer.Option(None, "--max-len", min=1, show_default=False),
    min_len: Optional[int] = typer.Option(None, "--min-len", min=0, show_default=False),
    sampling: bool = typer.Option(False, "--sampling", help="Sample instead of searching."),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=0, show_default=False),
    top_p: Optional[float] = typer.Option(None, "--top-p", min=0.0, max=1.0, show_default=False),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0.0, show_default=False),
    closed_set: List[str] = typer.Option([], "--closed-set", help="Allowed answer (repeatable)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, latest, or a checkpoint folder."),
    device: Optional[Device] = typer.Option(None, "--device", show_default=False),
    format: InferFormat = typer.Option("text", "--format", "-f", help="text, or one JSON object per row."),
    backend: Backend = typer.Option("torch", "--backend", help="torch (the checkpoint) or onnx (an `ofac export` "
                                    "folder, or RUN_DIR/onnx)."),
    save_box: Optional[Path] = typer.Option(None, "--save-box", help="Draw the predicted boxes on the input "
                                            "image (one row), or into this folder (--input).", show_default=False),
    save_image: Optional[Path] = typer.Option(None, "--save-image", help="Write the generated image to this PNG "
                                              "(one row), or into this folder (--input).", show_default=False),
    save_audio: Optional[Path] = typer.Option(None, "--save-audio", help="Write the generated speech to this WAV "
                                              "(.flac, .ogg by the name; one row), or into this folder (--input).",
                                              show_default=False),
    save_bvh: Optional[Path] = typer.Option(None, "--save-bvh", help="Write the generated motion to this BVH file "
                                            "(one row), or into this folder (--input).", show_default=False),
    save_gif: Optional[Path] = typer.Option(None, "--save-gif", help="Draw the generated motion as a stick-figure "
                                            "GIF (one row), or into this folder (--input).", show_default=False),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=1000, help="Diffusion sampling steps (MOTION; "
                                        "default: the task's).", show_default=False),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0.0, help="Classifier-free guidance weight "
                                             "(MOTION; default: the task's).", show_default=False),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of sampling (default 0: the same answer "
                                       "each time).", show_default=False),
) -> None:
    """Answer a trained task or a new instruction for one row (--data) or a file of rows (--input)."""
    err = console(stderr=True)
    if (task is None) == (instruction is None):
        raise typer.BadParameter("give exactly one of --task NAME and --instruction TEXT", param_hint="--task")
    if bool(data) == (input is not None):
        raise typer.BadParameter("give the row with --data COLUMN=VALUE ..., or rows with --input FILE",
                                 param_hint="--data")
    from ..runtime.errors import RunError
    from ..runtime.serve import infer as serve  # the onnx backend never imports torch

    bar = _Progress(err, "answering", least=32)
    try:
        outputs = serve.answer(run_dir, task or instruction, rows=[_parse_data(data)] if data else None, input=input,
                               checkpoint=checkpoint, device=_value(device), backend=backend.value,
                               progress=bar.report, beam_size=beam, max_len=max_len, min_len=min_len,
                               sampling=sampling or None, top_k=top_k, top_p=top_p, temperature=temperature,
                               closed_set=closed_set or None, steps=steps, guidance=guidance, seed=seed)
    except RunError as e:
        print_diagnostics(e.diagnostics, err)
        raise typer.Exit(1) from None
    finally:
        bar.stop()
    for o in outputs:
        print(serve.shown(o, format.value))
    for path, save in ((save_box, serve.save_boxes), (save_image, serve.save_images),
                       (save_audio, serve.save_audio), (save_bvh, serve.save_bvh), (save_gif, serve.save_gif)):
        if path is not None:
            try:
                for written in save(outputs, path, one_row=input is None):
                    err.print(f"wrote {written}", highlight=False)
            except ValueError as e:
                err.print(f"error: {e}", style="bold red", highlight=False)
                raise typer.Exit(1) from None


@app.command("eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="A run directory (written by `ofac run`)."),
    file: Optional[Path] = typer.Argument(None, help="Task file with the data (default: the run's own).",
                                          show_default=False),
    split: Split = typer.Option("valid", "--split", "-s", help="Which data split to score."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, latest, or a checkpoint folder."),
    device: Optional[Device] = typer.Option(None, "--device", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the predictions (default "
                                       "RUN_DIR/eval/SPLIT).", show_default=False),
    format: InferFormat = typer.Option("text", "--format", "-f", help="text (a table) or json."),
    show: int = typer.Option(2, "--show", min=0, help="Print this many predictions of each task after the "
                             "table (text format)."),
) -> None:
    """Score a trained model on each task's split with its metric; write every prediction to JSONL."""
    err = console(stderr=True)
    from ..runtime.errors import RunError
    from ..runtime.evaluate.metrics import task_metric
    from ..runtime.serve.evaluation import evaluate_run, shown_predictions

    bar = _Progress(err, "evaluating")
    try:
        results = evaluate_run(run_dir, file, split.value, checkpoint, _value(device), out, progress=bar.report)
    except RunError as e:
        print_diagnostics(e.diagnostics, err)
        raise typer.Exit(1) from None
    finally:
        bar.stop()
    folder = out or run_dir / "eval" / split.value
    if format.value == "json":
        print(json.dumps(results, indent=1))
    else:
        from rich.table import Table

        table = Table("task", "metric", "value", "loss", "token accuracy", show_edge=False, pad_edge=False)
        for name, r in results.items():
            metric = task_metric(r)
            table.add_row(name, metric or "-", f"{r[metric]:.4f}" if metric else "-", f"{r['loss']:.4f}",
                          f"{r['token_accuracy']:.4f}")
        console().print(table)
        for line in shown_predictions(folder, list(results), show):
            console().print(line, highlight=False)
    err.print(f"predictions: {folder}/<task>.jsonl")


@app.command("export")
def export_(
    run_dir: Path = typer.Argument(..., help="A run directory (written by `ofac run`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The export folder (default: export { out } "
                                       "of the run's task file, RUN_DIR/onnx).", show_default=False),
    task: List[str] = typer.Option([], "--task", "-t", help="Export only this task (repeatable; default: export "
                                   "{ tasks }, all)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, latest, or a checkpoint folder."),
    opset: Optional[int] = typer.Option(None, "--opset", min=18, help="ONNX opset: 23 (attention as one node, ONNX "
                                        "Runtime >= 1.23) or 18 (any runtime); default export { opset }, 23.",
                                        show_default=False),
) -> None:
    """Write ONNX graphs (encoders, decoder, decoder-with-past) that `ofac infer --backend onnx` runs."""
    err = console(stderr=True)
    from ..runtime.errors import RunError
    from ..runtime.serve.export import export

    try:
        with err.status("exporting") as status:
            folder = export(run_dir, out, checkpoint, opset, task or None, log=lambda m: status.update(m))
    except RunError as e:
        print_diagnostics(e.diagnostics, err)
        raise typer.Exit(1) from None
    for path in sorted(folder.iterdir()):
        print(path)


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="A run directory (with metrics.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the PNGs (default RUN_DIR/plots).",
                                       show_default=False),
) -> None:
    """Write PNG curves of a run: training loss per task, learning rate, validation metrics."""
    from ..runtime.train.plot import plot as draw

    try:
        written = draw(run_dir, out)
    except (FileNotFoundError, ValueError) as e:
        console(stderr=True).print(f"error: {e}", style="bold red", highlight=False)
        raise typer.Exit(1) from None
    for path in written:
        print(path)
