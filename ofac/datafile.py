"""Reading just enough of a data file to know its columns (header or first record)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


class DataFileError(Exception):
    """A data file that cannot be read; the message says why and the row it happened at."""


def columns_of(path: Path, names: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The column names of a data file.  `names` gives them for a headerless TSV/CSV.
    None when the format cannot be inspected here (no error: the runtime will read it)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataFileError(f"unknown data format `{path.suffix or path.name}`; use one of "
                            + ", ".join(sorted(FORMATS)))
    if fmt == "jsonl":
        return _jsonl_columns(path)
    if fmt in ("csv", "tsv"):
        if names:
            return names
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f, delimiter="\t" if fmt == "tsv" else ","), None)
        if not header:
            raise DataFileError("the file is empty: the first line must name the columns")
        return tuple(h.strip() for h in header)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    return tuple(pq.read_schema(path).names)


def _jsonl_columns(path: Path) -> tuple[str, ...]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"row {lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise DataFileError(f"row {lineno}: expected a JSON object, found {type(record).__name__}")
            return tuple(record)
    raise DataFileError("the file has no rows")
