"""The compiler's commands: `check`, `explain`, `fmt`, `modalities`.  Pure Python: no runtime."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .. import compiler, ir
from ..diagnostics import Diagnostic
from ..render import render_json, summary
from .app import app, console, print_diagnostics


class CheckFormat(str, Enum):
    human = "human"
    json = "json"


class ExplainFormat(str, Enum):
    text = "text"
    json = "json"


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
    out = console()
    if format is CheckFormat.json:
        print(render_json(diags))
    else:
        print_diagnostics(diags, out)
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
    err = console(stderr=True)
    if instruction is not None:
        lowered, diags = compiler.compile_instruction(instruction)
        tasks = [lowered] if lowered else []
    else:
        compiled, diags = compiler.compile_file(file)
        tasks = list(compiled.tasks) if compiled else []
    print_diagnostics(diags, err)
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
    from ..format import format_file
    from ..parse import parse_file

    out, changed, failed = console(), 0, False
    for path in files:
        text = path.read_text(encoding="utf-8")
        tf, diags, _ = parse_file(text, str(path))
        if tf is None:
            print_diagnostics(diags.items, out)
            failed = True
            continue
        canonical = format_file(tf)
        if canonical != text:
            changed += 1
            out.print(f"{'would reformat' if check_only else 'reformatted'} {path}")
            if not check_only:
                path.write_text(canonical, encoding="utf-8")
    raise typer.Exit(1 if failed or (check_only and changed) else 0)


@app.command()
def modalities(
    name: Optional[str] = typer.Argument(None, help="Show only this modality (e.g. TEXT).", show_default=False),
) -> None:
    """Print the modality table: attributes, preprocessors and adaptors the checker accepts."""
    from rich.table import Table

    from ..modalities import MODALITIES

    out = console()
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
