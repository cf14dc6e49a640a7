"""Fuzzy name matching for did-you-mean help."""
from __future__ import annotations

from typing import Iterable


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: a transposition counts as one edit."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate a typo most likely meant, or None when nothing is close."""
    key = name.lower()
    best, best_d = None, None
    for cand in candidates:
        c = cand.lower()
        d = 0 if c == key else edit_distance(key, c)
        if c in key or key in c:  # IMAGES, BOUNDING_BOX
            d = min(d, 1 if len(key) > 1 else d)
        if best_d is None or d < best_d:
            best, best_d = cand, d
    if best is None or best_d > max(1, len(name) // 3):
        return None
    return best
