"""Data sources: rows as dicts, read lazily and sharded.

A file source builds an offset index once (one pass, no row kept in memory) and reads a
row by seeking to it, so a DataLoader worker or a distributed rank touches only its own
rows.  In-memory sources (lists, torch Datasets, Hugging Face datasets) index directly."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError

FILE_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
csv.field_size_limit(1 << 30)  # base64 images in TSV cells are long


class Source(Sequence):
    """A random-access sequence of rows (dicts).  `name` is what diagnostics call it; rows
    are numbered from 1 in diagnostics, like lines of a file."""

    name: str = "<data>"
    base_dir: Path | None = None  # media paths in rows resolve against this

    def __len__(self) -> int:
        raise NotImplementedError

    def row(self, i: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.row(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.row(i)

    def row_number(self, i: int) -> int:
        """The 1-based row (file line for text files) of item i, for diagnostics."""
        return i + 1


class FileSource(Source):
    """JSONL / CSV / TSV: an offset index over lines; each row is parsed when read."""

    def __init__(self, path: str | Path, columns: Sequence[str] = ()):
        self.path = Path(path)
        self.name, self.base_dir = str(path), self.path.resolve().parent
        self.format = FILE_FORMATS.get(self.path.suffix.lower())
        if self.format is None or self.format == "parquet":
            raise DataError("E0101", f"not a line-based data file: {self.path.name}", file=self.name)
        if not self.path.exists():
            raise DataError("E0039", "data file not found", file=self.name,
                            help="paths in a task file are relative to the task file's folder")
        self.header: list[str] | None = list(columns) if columns else None
        self._offsets, self._lines = self._index()

    def _index(self) -> tuple[list[int], list[int]]:
        offsets, lines = [], []
        with self.path.open("rb") as f:
            pos, lineno = 0, 0
            for raw in f:
                lineno += 1
                if raw.strip():
                    if self.format != "jsonl" and self.header is None:
                        self.header = self._split(raw.decode("utf-8"), lineno)
                    else:
                        offsets.append(pos)
                        lines.append(lineno)
                pos += len(raw)
        return offsets, lines

    def _split(self, line: str, lineno: int) -> list[str]:
        delim = "\t" if self.format == "tsv" else ","
        try:
            return next(csv.reader(io.StringIO(line), delimiter=delim))
        except (csv.Error, StopIteration) as err:
            raise DataError("E0102", f"malformed {self.format.upper()} line: {err}", file=self.name,
                            row=lineno) from None

    def __len__(self) -> int:
        return len(self._offsets)

    def row_number(self, i: int) -> int:
        return self._lines[i]

    def _handle(self):
        # one handle per process: a handle inherited by a forked DataLoader worker would share
        # its seek position with the parent
        if getattr(self, "_pid", None) != os.getpid():
            self._fh, self._pid = self.path.open("rb"), os.getpid()
        return self._fh

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_fh", None)
        state.pop("_pid", None)
        return state

    def row(self, i: int) -> dict:
        f = self._handle()
        f.seek(self._offsets[i])
        line = f.readline().decode("utf-8")
        lineno = self._lines[i]
        if self.format == "jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError("E0102", f"not valid JSON: {err.msg} at column {err.colno}", file=self.name,
                                row=lineno, help="each line of a .jsonl file is one JSON object") from None
            if not isinstance(record, dict):
                raise DataError("E0102", f"expected a JSON object, found {type(record).__name__}",
                                file=self.name, row=lineno)
            return record
        cells = self._split(line.rstrip("\r\n"), lineno)
        if len(cells) != len(self.header):
            raise DataError("E0102", f"{len(cells)} cells but {len(self.header)} columns", file=self.name,
                            row=lineno, help="every row needs one cell per header column")
        return dict(zip(self.header, cells))


class ParquetSource(Source):
    def __init__(self, path: str | Path):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError("E0103", "reading Parquet needs pyarrow", file=str(path),
                            help="pip install pyarrow") from None
        self.path = Path(path)
        self.name, self.base_dir = str(path), self.path.resolve().parent
        self._file = pq.ParquetFile(self.path)
        sizes = [self._file.metadata.row_group(g).num_rows for g in range(self._file.num_row_groups)]
        self._starts = [sum(sizes[:g]) for g in range(len(sizes))]
        self._len = sum(sizes)
        self._cache: tuple[int, list[dict]] | None = None  # one row group decoded at a time

    def __len__(self) -> int:
        return self._len

    def row(self, i: int) -> dict:
        import bisect

        g = bisect.bisect_right(self._starts, i) - 1
        if self._cache is None or self._cache[0] != g:
            self._cache = (g, self._file.read_row_group(g).to_pylist())
        return self._cache[1][i - self._starts[g]]


class MemorySource(Source):
    """A list of dicts, a torch Dataset of dicts, or a Hugging Face `datasets.Dataset`."""

    def __init__(self, data: Any, name: str = "<memory>", base_dir: Path | None = None):
        self.data, self.name, self.base_dir = data, name, base_dir

    def __len__(self) -> int:
        return len(self.data)

    def row(self, i: int) -> dict:
        record = self.data[i]
        if not isinstance(record, dict):
            raise DataError("E0102", f"expected a dict per example, found {type(record).__name__}",
                            file=self.name, row=i + 1)
        return record


def open_source(data: Any, columns: Sequence[str] = (), base_dir: Path | None = None) -> Source:
    """Any supported dataset as a Source: a path (JSONL/CSV/TSV/Parquet), a Source, a list
    of dicts, a torch Dataset or a Hugging Face Dataset."""
    if isinstance(data, Source):
        return data
    if isinstance(data, (str, Path)):
        path = Path(data) if base_dir is None else Path(base_dir) / data
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise DataError("E0101", f"unknown data format `{path.suffix or path.name}`", file=str(path),
                            help="use .jsonl, .csv, .tsv or .parquet")
        return ParquetSource(path) if fmt == "parquet" else FileSource(path, columns)
    if type(data).__module__.startswith("datasets") or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return MemorySource(data, name=f"<{type(data).__name__}>", base_dir=base_dir)  # media paths: from base_dir
    raise DataError("E0101", f"cannot read a dataset of type {type(data).__name__}",
                    help="pass a path, a list of dicts, a torch Dataset or a datasets.Dataset")


def shard(n: int, rank: int, world: int) -> range:
    """The contiguous slice of n items that shard `rank` of `world` reads."""
    per, extra = divmod(n, world)
    start = rank * per + min(rank, extra)
    return range(start, start + per + (rank < extra))
