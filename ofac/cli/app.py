"""The Typer application and what every command shares: consoles, diagnostics, choices."""
from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console

from ..diagnostics import Diagnostic
from ..render import render

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="ofac: compile, check and run declarative multi-modal, multi-task learning.")


def console(stderr: bool = False, quiet: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True, quiet=quiet)


def print_diagnostics(diags: list[Diagnostic], out: Console) -> None:
    for d in diags:
        out.print(render(d))


def choices(name: str, values) -> type[Enum]:
    """An option's choices as an Enum for Typer, from the one place that defines them."""
    return Enum(name, {v: v for v in values}, type=str)
