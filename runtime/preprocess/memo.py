"""Decoded media kept between epochs: the deterministic part of decoding a file (a video's
sampled, resized frames; a waveform's normalized fbank) is the same every time a row comes
back, so each process keeps the results it made, up to a byte budget, least recently used out
first.  Randomness (SpecAugment, mirroring) is applied after, on a copy; a cached value is
never handed out for writing (numpy arrays are read-only, tensors are cloned by whoever
changes them).

Keys are the file's resolved path, size and modification time plus the decoding parameters:
a file rewritten during a run is decoded again.  Cells that are not files (bytes, base64,
arrays) are not cached.  `OFAC_MEDIA_CACHE_MB` sets the budget per process (default 1024;
0 turns the cache off)."""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from .media import named_path


def _budget() -> int:
    try:
        return int(float(os.environ.get("OFAC_MEDIA_CACHE_MB", "1024")) * 2**20)
    except ValueError:
        return 1024 * 2**20


def _nbytes(value) -> int:
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, (int, float, str, type(None))):
        return 64
    if hasattr(value, "nbytes"):  # numpy
        return int(value.nbytes)
    if hasattr(value, "element_size"):  # torch
        return int(value.element_size() * value.nelement())
    return 1024


class Memo:
    """An LRU map with a byte budget."""

    def __init__(self, budget: int | None = None):
        self.budget = _budget() if budget is None else budget
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, key, make):
        """The value made for `key` (by `make()` the first time)."""
        if key is None or self.budget <= 0:
            return make()
        found = self.items.get(key)
        if found is not None:
            self.items.move_to_end(key)
            self.hits += 1
            return found[0]
        self.misses += 1
        value = make()
        if hasattr(value, "flags"):
            value.flags.writeable = False
        size = _nbytes(value)
        if size <= self.budget:
            self.items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.budget:
                _, (_, dropped) = self.items.popitem(last=False)
                self.bytes -= dropped
        return value

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0


MEDIA = Memo()


def file_key(value, base_dir: Path | None, *params) -> tuple | None:
    """(path, size, mtime, *params) for a cell naming an existing file; None otherwise."""
    path = named_path(value, base_dir)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (str(path), st.st_size, st.st_mtime_ns) + params
