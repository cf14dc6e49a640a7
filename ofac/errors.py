"""The error the Python API raises when compilation produced errors: it carries every
diagnostic, and its message is their rustc-style rendering."""
from __future__ import annotations

from .diagnostics import Diagnostic
from .render import render_plain


class CompileError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n" + render_plain(self.diagnostics))
