"""Reading just enough of a data file to know its columns (header or first record), and the
splits' path syntax (which files make which dataset)."""
from __future__ import annotations

import csv
import json
import re
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


_RANGE = re.compile(r"^(.*)\[(\d+)-(\d+)\](.*)$")


def ofasys_paths(items) -> bool:
    """Whether a split's value is OFASys' path syntax: one string with `|||`, `,` or a numbered
    range `name_[1-3]`."""
    if len(items) != 1 or not isinstance(items[0], str):
        return False
    return "|||" in items[0] or "," in items[0] or _RANGE.match(items[0].strip()) is not None


def expand_range(name: str) -> list[str]:
    """OFASys' `part_[1-3].jsonl`: part_1.jsonl, part_2.jsonl, part_3.jsonl (one range a path; a
    zero-padded start, `[01-12]`, pads every number to its width).  ValueError for a range that
    runs backwards."""
    m = _RANGE.match(name)
    if m is None:
        return [name]
    head, lo, hi, tail = m.groups()
    if int(lo) > int(hi):
        raise ValueError(f"the range [{lo}-{hi}] in `{name}` runs backwards")
    width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
    return [f"{head}{str(k).zfill(width)}{tail}" for k in range(int(lo), int(hi) + 1)]


def split_paths(items) -> tuple[list, list[Dataset]]:
    """A split's files (or in-memory datasets), each once in order, and its datasets.  OFASys'
    syntax `a.jsonl,b.jsonl ||| c.jsonl` (one string) gives one dataset per `|||` part, whose
    comma-separated files (a range `b_[1-3].jsonl` is three) are read one per epoch in turn; any
    other value (a path, or a list of them) is one dataset of every file, concatenated, every
    epoch."""
    if not ofasys_paths(items):
        return list(items), [Dataset((tuple(range(len(items))),))]
    files: list[str] = []
    out = []
    for part in items[0].split("|||"):
        names = [n for f in part.split(",") if f.strip() for n in expand_range(f.strip())]
        for n in names:
            if n not in files:
                files.append(n)
        out.append(Dataset(tuple((files.index(n),) for n in names)))
    return files, [d for d in out if d.epochs]
