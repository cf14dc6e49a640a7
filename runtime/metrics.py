"""Validation metrics, by the name the IR gives a task (`metric`).  Libraries where one fits
(sacrebleu for BLEU, jiwer for WER); CIDEr-D and IoU are small enough to write here."""
from __future__ import annotations

import math
import re
from collections import Counter


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def accuracy(preds: list[str], refs: list[str]) -> float:
    return sum(normalize(p) == normalize(r) for p, r in zip(preds, refs)) / max(1, len(refs))


def bleu(preds: list[str], refs: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(preds, [refs]).score / 100.0


def wer(preds: list[str], refs: list[str]) -> float:
    import jiwer

    refs_n = [normalize(r) or "<empty>" for r in refs]
    return float(jiwer.wer(refs_n, [normalize(p) for p in preds]))


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_acc(preds: list, refs: list, threshold: float = 0.5) -> float:
    return sum(p is not None and iou(p, r) >= threshold for p, r in zip(preds, refs)) / max(1, len(refs))


def cider(preds: list[str], refs: list[str], n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D with one reference per example (TF-IDF n-gram cosine with a length penalty)."""
    def grams(text, k):
        words = normalize(text).split()
        return Counter(tuple(words[i:i + k]) for i in range(len(words) - k + 1))

    total = 0.0
    for k in range(1, n + 1):
        ref_grams = [grams(r, k) for r in refs]
        df = Counter(g for rg in ref_grams for g in rg)
        log_n = math.log(max(1.0, float(len(refs))))
        for p, r, rg in zip(preds, refs, ref_grams):
            pg = grams(p, k)
            vp = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in pg.items()}
            vr = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in rg.items()}
            dot = sum(min(vp[g], vr[g]) * vr[g] for g in vp if g in vr)
            norm = math.sqrt(sum(v * v for v in vp.values())) * math.sqrt(sum(v * v for v in vr.values()))
            delta = len(normalize(p).split()) - len(normalize(r).split())
            total += (dot / norm if norm else 0.0) * math.exp(-delta * delta / (2 * sigma * sigma)) / n
    return 10.0 * total / max(1, len(refs))


METRICS = {"accuracy": accuracy, "exact_match": accuracy, "bleu": bleu, "wer": wer, "cider": cider,
           "iou_acc": iou_acc}
LOWER_IS_BETTER = {"wer"}
