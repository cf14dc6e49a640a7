"""STRUCT: tables, knowledge triples and database schemas linearized to text, then BPE, with
the OFASys conventions (` : ` between cells, ` | ` between rows, lower-cased)."""
from __future__ import annotations

import json

from .base import Context, Tokens, preprocessors
from .text import clean

REGISTRY = preprocessors()


def _cell(value) -> str:
    return " ".join(str(value).replace("_", " ").split())


def linearize_table(value, row_sep: str = " | ", col_sep: str = " : ") -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value  # already linearized
    if isinstance(value, dict):  # {"header": [...], "rows": [[...], ...]} or {table_head, table_content}
        head = value.get("header") or value.get("table_head") or []
        rows = value.get("rows") or value.get("table_content") or []
        name = value.get("name") or value.get("table_name")
        parts = ([f"table : {_cell(name)}"] if name else []) + ([col_sep.join(map(_cell, head))] if head else [])
        return row_sep.join(parts + [col_sep.join(map(_cell, r)) for r in rows])
    if isinstance(value, (list, tuple)):  # rows, or (subject, relation, object) triples
        return row_sep.join(col_sep.join(map(_cell, r)) if isinstance(r, (list, tuple)) else _cell(r) for r in value)
    raise ValueError(f"a table is a list of rows, a dict with header/rows, or text; found {type(value).__name__}")


def linearize_database(value, with_content: bool = True) -> str:
    """`| db_id | table : col , col ( v1 , v2 ) | ...` (the serialization of OFASys' Spider task);
    without content, the columns alone."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if not isinstance(value, dict) or "tables" not in value:
        raise ValueError("a database is {\"db_id\": ..., \"tables\": {table: [columns] | {column: [values]}}}")
    parts = [_cell(value.get("db_id", "database"))]
    for table, cols in value["tables"].items():
        if isinstance(cols, dict):
            rendered = [f"{_cell(c)} ( {' , '.join(map(_cell, vals))} )" if vals and with_content else _cell(c)
                        for c, vals in cols.items()]
        else:
            rendered = [_cell(c) for c in cols]
        parts.append(f"{_cell(table)} : {' , '.join(rendered)}")
    return " | " + " | ".join(parts)


@REGISTRY.register("table", attrs=("max_length", "uncased", "row_separator", "col_separator"),
                   corpus=lambda value, attrs: [linearize_table(value).lower()])
def table(value, attrs: dict, ctx: Context) -> Tokens:
    def render(cell_words):
        return linearize_table(_trim_cells(value, cell_words), attrs.get("row_separator", " | "),
                               attrs.get("col_separator", " : "))
    return _tokens(render, attrs, ctx)


@REGISTRY.register("database", attrs=("max_length", "uncased", "with_content"),
                   corpus=lambda value, attrs: [linearize_database(value, attrs.get("with_content", True)).lower()])
def database(value, attrs: dict, ctx: Context) -> Tokens:
    content = attrs.get("with_content", True)
    return _tokens(lambda cell_words: linearize_database(_trim_cells(value, cell_words), content), attrs, ctx)


def _trim_cells(value, words: int | None):
    """The structure with every cell cut to `words` words (None: untouched)."""
    if words is None:
        return value
    if isinstance(value, str):  # a JSON-serialized structure, or already linearized text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    return _cut(value, words)


def _cut(value, words: int):
    if isinstance(value, dict):
        return {k: _cut(v, words) if k not in ("db_id", "name", "table_name") else v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(v, words) for v in value]
    return " ".join(str(value).split()[:words])


def _tokens(render, attrs: dict, ctx: Context) -> Tokens:
    """With `max_length`, shrink the per-cell word budget until the whole structure fits, so
    every cell keeps its start (rather than losing the last rows), then cut what is left."""
    ids = ctx.vocab.encode(clean(render(None).lower(), attrs))
    limit = attrs.get("max_length")
    if limit and len(ids) > limit:
        words = 32
        while words > 1:
            ids = ctx.vocab.encode(clean(render(words).lower(), attrs))
            if len(ids) <= limit:
                break
            words //= 2
        ids = ids[:limit]
    return Tokens(ids)

