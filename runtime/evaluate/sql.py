"""SQL execution accuracy (text-to-SQL tasks such as Spider): run the predicted and the
reference query on the example's database and compare what they return.

The database is either a path to a sqlite file (opened read-only) or the STRUCT database the
task encodes, `{"db_id": ..., "tables": {table: [columns] | {column: [values, ...]}}}`, loaded
into an in-memory sqlite: a table given as {column: values} gets one row per position of its
value lists (shorter lists padded with NULL); a table given as a column list is empty."""
from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

_STEPS = 2_000_000  # sqlite VM steps a query may take before it is abandoned (a runaway join)


def _quote(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def connect(database) -> sqlite3.Connection:
    if isinstance(database, (str, Path)) and str(database).endswith((".sqlite", ".sqlite3", ".db")):
        conn = sqlite3.connect(f"file:{Path(database)}?mode=ro", uri=True)
    else:
        if isinstance(database, str):
            database = json.loads(database)
        if not isinstance(database, dict) or "tables" not in database:
            raise ValueError("a database is a sqlite file path or {\"db_id\": ..., \"tables\": {...}}")
        conn = sqlite3.connect(":memory:")
        for table, cols in database["tables"].items():
            columns = list(cols) if not isinstance(cols, dict) else list(cols.keys())
            conn.execute(f"CREATE TABLE {_quote(table)} ({', '.join(_quote(c) for c in columns)})")
            if isinstance(cols, dict) and cols:
                height = max(len(v) for v in cols.values())
                rows = [tuple(v[i] if i < len(v) else None for v in cols.values()) for i in range(height)]
                conn.executemany(f"INSERT INTO {_quote(table)} VALUES ({', '.join('?' * len(columns))})", rows)
    steps = [0]

    def guard():
        steps[0] += 1000
        return 1 if steps[0] > _STEPS else 0  # non-zero aborts the statement
    conn.set_progress_handler(guard, 1000)
    return conn


def run(conn: sqlite3.Connection, query: str):
    """The rows a query returns, or None when it does not run."""
    try:
        return conn.execute(query).fetchall()
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError):
        return None


def _comparable(rows):
    return [tuple(str(v).lower() if isinstance(v, str) else v for v in r) for r in rows]


def execution_match(pred: str, gold: str, database) -> bool:
    """True when `pred` returns the rows `gold` returns (in order if gold has ORDER BY)."""
    if database is None:
        raise ValueError("sql_execution needs the example's database (a STRUCT database slot)")
    conn = connect(database)
    try:
        want = run(conn, gold)
        if want is None:  # the reference itself does not run here: fall back to the query text
            return " ".join(pred.lower().split()) == " ".join(gold.lower().split())
        got = run(conn, pred)
        if got is None:
            return False
        want, got = _comparable(want), _comparable(got)
        return got == want if "order by" in gold.lower() else Counter(got) == Counter(want)
    finally:
        conn.close()
