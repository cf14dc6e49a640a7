"""The `ofac` command line.  Thin: each command calls one library function and renders."""
from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from . import compiler, ir
from .diagnostics import Diagnostic
from .render import render, render_json, summary
from .settings import TRAIN

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="ofac: compile, check and run declarative multi-modal, multi-task learning.")


class CheckFormat(str, Enum):
    human = "human"
    json = "json"


class ExplainFormat(str, Enum):
    text = "text"
    json = "json"


def _console(stderr: bool = False, quiet: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True, quiet=quiet)


def _print_diags(diags: list[Diagnostic], console: Console) -> None:
    for d in diags:
        console.print(render(d))


@app.command()
def check(
    files: Optional[List[Path]] = typer.Argument(None, help="`.ofa` task files to check.", show_default=False),
    instruction: Optional[List[str]] = typer.Option(
        None, "--instruction", "-i", help="Also check this instruction string (repeatable).", show_default=False),
    format: CheckFormat = typer.Option(CheckFormat.human, "--format", "-f", help="human (rustc-style) or json."),
    no_data: bool = typer.Option(False, "--no-data", help="Skip reading data files for their columns."),
) -> None:
    """Lint task files and instructions; exit 0 without errors, 1 with errors, 2 on bad usage."""
    if not files and not instruction:
        raise typer.BadParameter("give at least one FILE or --instruction", param_hint="FILES")
    diags: list[Diagnostic] = []
    for path in files or ():
        diags += compiler.check_file_at(path, check_data=not no_data)
    for i, text in enumerate(instruction or ()):
        name = "<instruction>" if len(instruction) == 1 else f"<instruction {i + 1}>"
        diags += compiler.compile_instruction(text, name=name)[1]
    out = _console()
    if format is CheckFormat.json:
        print(render_json(diags))
    else:
        _print_diags(diags, out)
        checked = len(files or ()) + len(instruction or ())
        tail = summary(diags)
        out.print(f"checked {checked} input{'s' * (checked != 1)}: " + (tail or "no problems"),
                  style="bold red" if any(d.is_error for d in diags) else "bold green")
    raise typer.Exit(1 if any(d.is_error for d in diags) else 0)


@app.command()
def explain(
    file: Optional[Path] = typer.Argument(None, help="A `.ofa` task file.", show_default=False),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task of the file.", show_default=False),
    instruction: Optional[str] = typer.Option(
        None, "--instruction", "-i", help="Explain this instruction instead of a file.", show_default=False),
    format: ExplainFormat = typer.Option(ExplainFormat.text, "--format", "-f", help="text or json."),
) -> None:
    """Print the IR that a task file or instruction lowers to."""
    if (file is None) == (instruction is None):
        raise typer.BadParameter("give either FILE or --instruction", param_hint="FILE")
    err = _console(stderr=True)
    if instruction is not None:
        lowered, diags = compiler.compile_instruction(instruction)
        tasks = [lowered] if lowered else []
    else:
        compiled, diags = compiler.compile_file(file)
        tasks = list(compiled.tasks) if compiled else []
    _print_diags(diags, err)
    if any(d.is_error for d in diags):
        err.print(f"cannot explain: {summary(diags)}", style="bold red")
        raise typer.Exit(1)
    if task is not None:
        tasks = [t for t in tasks if t.task == task]
        if not tasks:
            names = ", ".join(t.task for t in compiled.tasks) if file is not None else "instruction"
            raise typer.BadParameter(f"no task `{task}` (tasks: {names})", param_hint="--task")
    if format is ExplainFormat.json:
        print(json.dumps([ir.to_json(t) for t in tasks], indent=1, ensure_ascii=False))
    else:
        print("\n\n".join(ir.format_task(t) for t in tasks))


@app.command()
def fmt(
    files: List[Path] = typer.Argument(..., help="`.ofa` task files to format in place."),
    check_only: bool = typer.Option(False, "--check", help="Only report files that are not formatted."),
) -> None:
    """Rewrite task files in canonical form (comments are kept only in unchanged files)."""
    from .format import format_file
    from .parse import parse_file

    out, changed, failed = _console(), 0, False
    for path in files:
        text = path.read_text(encoding="utf-8")
        tf, diags, _ = parse_file(text, str(path))
        if tf is None:
            _print_diags(diags.items, out)
            failed = True
            continue
        canonical = format_file(tf)
        if canonical != text:
            changed += 1
            out.print(f"{'would reformat' if check_only else 'reformatted'} {path}")
            if not check_only:
                path.write_text(canonical, encoding="utf-8")
    raise typer.Exit(1 if failed or (check_only and changed) else 0)


def _choices(name: str, values) -> type[Enum]:
    """An option's choices as an Enum for Typer, from the one place that defines them."""
    return Enum(name, {v: v for v in values}, type=str)


Split = _choices("Split", ("train", "valid", "test"))


@app.command()
def data(
    file: Path = typer.Argument(..., help="A `.ofa` task file."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task.", show_default=False),
    split: Split = typer.Option("train", "--split", "-s", help="Which data split to read."),
    rows: int = typer.Option(2, "--rows", "-n", min=1, help="Rows to show per task."),
) -> None:
    """Run the data path on a few rows and show what the model will see (needs the runtime)."""
    compiled, diags = compiler.compile_file(file)
    err = _console(stderr=True)
    _print_diags(diags, err)
    if compiled is None:
        err.print(f"cannot read the data: {summary(diags)}", style="bold red")
        raise typer.Exit(1)
    if task is not None and compiled.task(task) is None:
        raise typer.BadParameter(f"no task `{task}` (tasks: {', '.join(t.task for t in compiled.tasks)})",
                                 param_hint="--task")
    from ofac.runtime.preview import preview

    result = preview(compiled, file.parent, task, split.value, rows)
    print("\n".join(result.lines))
    _print_diags(result.diagnostics, err)
    raise typer.Exit(1 if result.diagnostics else 0)


Device = _choices("Device", TRAIN.setting("device").choices)  # exactly what `train { device }` accepts
Precision = _choices("Precision", TRAIN.setting("precision").choices)
Parallel = _choices("Parallel", TRAIN.setting("parallel").choices)


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
    err = _console(stderr=True)
    compiled, diags = compiler.compile_file(file)
    _print_diags(diags, err)
    if compiled is None:
        err.print(f"cannot train: {summary(diags)}", style="bold red")
        raise typer.Exit(1)
    from ofac.runtime.errors import RunError
    from ofac.runtime.trainer import Trainer

    if nproc > 1:
        from ofac.runtime.distributed import launched, torchrun

        if not launched():  # start N copies of this command through torchrun; each trains one rank
            args = [str(file)] + _forward(out=out, steps=steps, resume=resume, device=device, precision=precision,
                                          parallel=parallel)
            raise typer.Exit(torchrun(nproc, ["-m", "ofac.cli", "run", *args], err))
    try:
        from ofac.runtime.distributed import launched

        rank = int(os.environ.get("RANK", 0)) if launched() else 0
        from ofac.runtime.display import TrainDisplay

        total = steps or dict(compiled.checked.train).get("steps", 1000)
        display = TrainDisplay(err if rank == 0 else _console(stderr=True, quiet=True), total,
                               {t.task: t.get("metric") for t in compiled.tasks})
        messages = (lambda msg: None) if display.live else None  # the live table shows progress
        trainer = Trainer(compiled, file.parent, out=out, steps=steps, resume=resume,
                          device=device.value if device else None, precision=precision.value if precision else None,
                          parallel=parallel.value if parallel else None,
                          log=messages or (lambda msg: err.print(msg, highlight=False) if not msg.startswith("step ")
                                           else None),
                          on_record=display)
        try:
            result = trainer.fit()
        finally:
            display.close()
    except RunError as e:
        if rank == 0:  # every rank meets the same problem; one report is enough
            _print_diags([e.diagnostic], err)
        raise typer.Exit(1)
    if rank == 0:
        err.print(f"{'interrupted at' if result.interrupted else 'finished'} step {result.step}: {result.run_dir}")
    raise typer.Exit(130 if result.interrupted else 0)


def _progress(console: Console, total: int, what: str):
    """A rich progress bar on stderr for `total` rows (a no-op callable for short inputs)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if total < 32:
        return None, lambda n: None
    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=console, transient=True)
    job = bar.add_task(what, total=total)
    return bar, lambda n: bar.update(job, completed=n)


def _parse_data(items: list[str]) -> dict:
    row = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"`{item}` is not COLUMN=VALUE", param_hint="--data")
        key, value = item.split("=", 1)
        row[key.strip()] = value
    return row


InferFormat = _choices("InferFormat", ("text", "json"))
Backend = _choices("Backend", ("torch", "onnx"))


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
) -> None:
    """Answer a trained task or a new instruction for one row (--data) or a file of rows (--input)."""
    err = _console(stderr=True)
    if (task is None) == (instruction is None):
        raise typer.BadParameter("give exactly one of --task NAME and --instruction TEXT", param_hint="--task")
    if bool(data) == (input is not None):
        raise typer.BadParameter("give the row with --data COLUMN=VALUE ..., or rows with --input FILE",
                                 param_hint="--data")
    from ofac.api import OFASys  # the onnx backend then never imports torch
    from ofac.runtime.answer import read_rows
    from ofac.runtime.errors import RunError

    try:
        system = OFASys.from_pretrained(run_dir, checkpoint, device.value if device else None, backend=backend.value)
        rows = [_parse_data(data)] if data else read_rows(input)
        base = input.parent if input is not None else Path.cwd()
        bar, report = _progress(err, len(rows), "answering")
        if bar is not None:
            bar.start()
        try:
            outputs = system.inference(task or instruction, rows, beam_size=beam, max_len=max_len, min_len=min_len,
                                       sampling=sampling or None, top_k=top_k, top_p=top_p, temperature=temperature,
                                       closed_set=closed_set or None, base_dir=base, progress=report)
        finally:
            if bar is not None:
                bar.stop()
    except RunError as e:
        _print_diags(e.diagnostics, err)
        raise typer.Exit(1)
    for k, o in enumerate(outputs):
        if format.value == "json":
            print(json.dumps(o.to_dict()))
        else:
            shown = o.text if o.text is not None else ""
            if o.boxes:
                shown = "; ".join(f"{lab + ' ' if lab else ''}[{', '.join(f'{c:.1f}' for c in b)}]"
                                  for b, lab in zip(o.boxes, o.labels or [""] * len(o.boxes)))
            print(shown)
        if save_box is not None:
            target = save_box if len(outputs) == 1 and input is None else save_box / f"{k}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                o.save_box(target)
            except ValueError as e:
                err.print(f"error: {e}", style="bold red", highlight=False)
                raise typer.Exit(1)


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
    err = _console(stderr=True)
    from ofac.runtime.errors import RunError
    from ofac.runtime.inference import evaluate_run

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=err, transient=True)
    job = bar.add_task("evaluating", total=None)
    try:
        with bar:
            results = evaluate_run(run_dir, file, split.value, checkpoint, device.value if device else None, out,
                                   progress=lambda done, total: bar.update(job, completed=done, total=total))
    except RunError as e:
        _print_diags(e.diagnostics, err)
        raise typer.Exit(1)
    if format.value == "json":
        print(json.dumps(results, indent=1))
    else:
        from rich.table import Table

        from ofac.runtime.metrics import task_metric

        table = Table("task", "metric", "value", "loss", "token accuracy", show_edge=False, pad_edge=False)
        for name, r in results.items():
            metric = task_metric(r)
            table.add_row(name, metric or "-", f"{r[metric]:.4f}" if metric else "-", f"{r['loss']:.4f}",
                          f"{r['token_accuracy']:.4f}")
        _console().print(table)
        if show:
            _show_predictions(out or run_dir / "eval" / split.value, list(results), show)
    err.print(f"predictions: {out or run_dir / 'eval' / split.value}/<task>.jsonl")


def _show_predictions(folder: Path, tasks: list[str], n: int) -> None:
    """The first `n` predictions of each task, against their references."""
    from rich.markup import escape

    def brief(value) -> str:
        if isinstance(value, list):  # boxes, lists of (box, label)
            return "[" + ", ".join(brief(v) for v in value) + "]"
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        return text if len(text) <= 70 else text[:67] + "..."

    console = _console()
    for task in tasks:
        lines = (folder / f"{task}.jsonl").read_text().splitlines()[:n]
        for line in lines:
            p = json.loads(line)
            same = p["prediction"] == p["reference"]
            mark = "[green]=[/green]" if same else "[red]≠[/red]"
            console.print(f"{task} row {p['row']}: {escape(brief(p['prediction']))} {mark} "
                          f"{escape(brief(p['reference']))}", highlight=False)


@app.command("export")
def export_(
    run_dir: Path = typer.Argument(..., help="A run directory (written by `ofac run`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The export folder (default RUN_DIR/onnx).",
                                       show_default=False),
    task: List[str] = typer.Option([], "--task", "-t", help="Export only this task (repeatable)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, latest, or a checkpoint folder."),
    opset: int = typer.Option(23, "--opset", min=18, help="ONNX opset: 23 (attention as one node, ONNX Runtime >= 1.23) or 18 (any runtime)."),
) -> None:
    """Write ONNX graphs (encoders, decoder, decoder-with-past) that `ofac infer --backend onnx` runs."""
    err = _console(stderr=True)
    from ofac.runtime.errors import RunError
    from ofac.runtime.export import export

    target = out or run_dir / "onnx"
    try:
        with err.status("exporting") as status:
            folder = export(run_dir, target, checkpoint, opset, task or None, log=lambda m: status.update(m))
    except RunError as e:
        _print_diags([e.diagnostic], err)
        raise typer.Exit(1)
    for path in sorted(folder.iterdir()):
        print(path)


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="A run directory (with metrics.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for the PNGs (default RUN_DIR/plots).",
                                       show_default=False),
) -> None:
    """Write PNG curves of a run: training loss per task, learning rate, validation metrics."""
    from ofac.runtime.plot import plot as draw

    try:
        written = draw(run_dir, out)
    except (FileNotFoundError, ValueError) as e:
        _console(stderr=True).print(f"error: {e}", style="bold red", highlight=False)
        raise typer.Exit(1)
    for path in written:
        print(path)


@app.command()
def modalities(
    name: Optional[str] = typer.Argument(None, help="Show only this modality (e.g. TEXT).", show_default=False),
) -> None:
    """Print the modality table: attributes, preprocessors and adaptors the checker accepts."""
    from rich.table import Table

    from .modalities import MODALITIES

    out = _console()
    chosen = [m for m in MODALITIES.values() if name is None or m.name == name.upper()]
    if not chosen:
        raise typer.BadParameter(f"no modality `{name}` (modalities: {', '.join(MODALITIES)})", param_hint="NAME")
    for m in chosen:
        out.print(f"[bold]{m.name}[/bold]: {m.doc}" + (" (fuses into token groups)" if m.token_like else ""))
        table = Table("attribute", "value", "sides", "meaning", show_edge=False, pad_edge=False)
        for a in m.attrs:
            value = a.kind if a.kind != "flag" else "-"
            if a.range_text():
                value += " " + a.range_text()
            meaning = a.doc + (f" (needs preprocess={'|'.join(a.preprocess)})" if a.preprocess else "")
            table.add_row(a.name, value, "/".join(sorted(a.sides)), ("[dim]deprecated:[/dim] " if a.deprecated
                                                                       else "") + meaning)
        out.print(table)
        pre = ", ".join(p.name + ("*" if i == 0 else "") for i, p in enumerate(m.preprocessors))
        ada = ", ".join(f"{a.name} ({'/'.join(sorted(a.sides))}{', generates' if a.target else ''})"
                        for a in m.adaptors)
        out.print(f"  preprocess= {pre}   (* default)\n  adaptor=    {ada}\n")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
