"""Reading just enough of a data file to know its columns (header or first record), and the
splits' path syntax (which files make which dataset)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Dataset:
    """One dataset of a task's split: `epochs[e % len(epochs)]` are the files (indices into the
    split's flat file list) that epoch e reads, concatenated, and `ratio` of their rows are
    drawn each epoch (< 1 subsamples, > 1 repeats)."""

    epochs: tuple[tuple[int, ...], ...]
    ratio: float = 1.0


def ofasys_paths(items) -> bool:
    """Whether a split's value is OFASys' path syntax: one string with `|||` or `,`."""
    return len(items) == 1 and isinstance(items[0], str) and ("|||" in items[0] or "," in items[0])


def split_paths(items) -> tuple[list, list[Dataset]]:
    """A split's files (or in-memory datasets), each once in order, and its datasets.  OFASys'
    syntax `a.jsonl,b.jsonl ||| c.jsonl` (one string) gives one dataset per `|||` part, whose
    comma-separated files are read one per epoch in turn; any other value (a path, or a list of
    them) is one dataset of every file, concatenated, every epoch."""
    if not ofasys_paths(items):
        return list(items), [Dataset((tuple(range(len(items))),))]
    files: list[str] = []
    out = []
    for part in items[0].split("|||"):
        names = [f.strip() for f in part.split(",") if f.strip()]
        for n in names:
            if n not in files:
                files.append(n)
        out.append(Dataset(tuple((files.index(n),) for n in names)))
    return files, [d for d in out if d.epochs]
