"""Validation metrics, by the name the IR gives a task (`metric`).  Libraries where one fits
(sacrebleu for BLEU, jiwer for WER, rouge-score for ROUGE-L, torchmetrics/pycocotools for
detection mAP, sqlite3 for SQL execution); CIDEr-D has no maintained library without a Java
dependency, and IoU@0.5 is one line of torchvision.

Each takes (predictions, references) as the postprocess module produces them.  A text
reference is one string, or (a task with `references = column`) a list of strings: accuracy
counts a match with any, BLEU and CIDEr-D use them all, ROUGE-L keeps the best; `vqa_score`
also takes OFASys' {answer: confidence} form."""
from __future__ import annotations

import math
import re
from collections import Counter


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def several(ref) -> list[str]:
    """One reference or several, as a list of strings."""
    return [str(r) for r in ref] if isinstance(ref, (list, tuple)) else [str(ref)]


def accuracy(preds: list[str], refs: list) -> float:
    return sum(normalize(p) in {normalize(r) for r in several(ref)} for p, ref in zip(preds, refs)) / max(1, len(refs))


def bleu(preds: list[str], refs: list) -> float:
    import sacrebleu

    lists = [several(r) for r in refs]
    streams = [[rs[k] if k < len(rs) else None for rs in lists] for k in range(max(map(len, lists), default=1))]
    return sacrebleu.corpus_bleu(preds, streams).score / 100.0


def vqa_score(preds: list[str], refs: list) -> float:
    """VQA soft accuracy.  A reference that is a list of (human) answers scores the official
    way, min(1, matches / 3) averaged over the leave-one-out subsets (written for VQA's ten
    answers); a dict {answer: confidence} (OFASys' `ref_dict`) scores the prediction's
    confidence; a single answer scores 1 on a match."""
    total = 0.0
    for p, ref in zip(preds, refs):
        pred = normalize(p)
        if isinstance(ref, dict):
            total += max((float(c) for a, c in ref.items() if normalize(a) == pred), default=0.0)
            continue
        answers = [normalize(a) for a in several(ref)]
        if len(answers) == 1:
            total += float(answers[0] == pred)
            continue
        matches = sum(a == pred for a in answers)
        total += sum(min(1.0, (matches - (a == pred)) / 3.0) for a in answers) / len(answers)
    return total / max(1, len(refs))


def f_measure(preds: list[str], refs: list, positive: str) -> float:
    """Binary F1 of predicted labels against reference labels, `positive` the positive label
    (normalized texts; OFASys' `f_measure` with beta 1, e.g. MRPC and QQP)."""
    pos = normalize(positive)
    tp = fp = fn = 0
    for p, ref in zip(preds, refs):
        said, truth = normalize(p) == pos, normalize(several(ref)[0]) == pos
        tp += said and truth
        fp += said and not truth
        fn += truth and not said
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _grid(text: str) -> list[str]:
    return re.findall(r"\d", str(text))


def solved_acc(preds: list[str], refs: list) -> float:
    """Sudoku: the share of puzzles whose predicted grid (its digits, read in order, so the
    `d : d | ...` form and plain digits alike) is the solution, every cell right."""
    return sum(_grid(p) == _grid(several(r)[0]) for p, r in zip(preds, refs)) / max(1, len(refs))


def cell_acc(preds: list[str], refs: list) -> float:
    """Sudoku: the share of the solutions' cells the prediction gets right, position by position
    (a missing cell is wrong, extra ones are ignored)."""
    right = cells = 0
    for p, r in zip(preds, refs):
        got, truth = _grid(p), _grid(several(r)[0])
        right += sum(a == b for a, b in zip(got, truth))
        cells += len(truth)
    return right / max(1, cells)


def wer(preds: list[str], refs: list[str]) -> float:
    import jiwer

    refs_n = [normalize(several(r)[0]) or "<empty>" for r in refs]
    return float(jiwer.wer(refs_n, [normalize(p) for p in preds]))


def matthews_corrcoef(preds: list[str], refs: list[str]) -> float:
    """Matthews correlation of predicted and reference labels (OFASys' `matthews_corrcoef`, CoLA's
    metric), over normalized label texts: 1 perfect, 0 chance, -1 inverted; multi-class by the
    confusion-matrix generalization scikit-learn implements."""
    from sklearn.metrics import matthews_corrcoef as mcc

    return float(mcc([normalize(several(r)[0]) for r in refs], [normalize(p) for p in preds]))


def iou_acc(preds: list, refs: list, threshold: float = 0.5) -> float:
    """The share of examples whose predicted box overlaps the reference with IoU >= 0.5."""
    import torch
    from torchvision.ops import box_iou

    hits = 0
    for p, r in zip(preds, refs):
        if p is not None:
            iou = box_iou(torch.tensor([p], dtype=torch.float64), torch.tensor([r], dtype=torch.float64))
            hits += float(iou) >= threshold
    return hits / max(1, len(refs))


class CiderD:
    """CIDEr-D against a corpus of references: TF-IDF n-gram (1..n) cosine with a Gaussian length
    penalty (sigma), candidate counts clipped by the reference's, averaged over an example's
    references, x10.  The document frequencies count an example once however many of its
    references hold an n-gram: over the evaluated set for the metric (`cider`), over the training
    references for SCST's reward (OFASys' `scst_cider_cached_tokens`)."""

    def __init__(self, corpus: list, n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        lists = [several(r) for r in corpus]
        self.log_n = math.log(max(1.0, float(len(lists))))
        self.df = [Counter(g for rs in lists for g in set().union(*(self._grams(r, k) for r in rs)))
                   for k in range(1, n + 1)]

    @staticmethod
    def _grams(text: str, k: int) -> Counter:
        words = normalize(text).split()
        return Counter(tuple(words[i:i + k]) for i in range(len(words) - k + 1))

    def _vector(self, text: str, k: int) -> dict:
        df = self.df[k - 1]
        return {g: c * (self.log_n - math.log(max(1.0, df[g]))) for g, c in self._grams(text, k).items()}

    def score(self, pred: str, refs) -> float:
        """One candidate against its references (a list, or what `several` splits)."""
        rs = several(refs)
        total = 0.0
        for k in range(1, self.n + 1):
            vp = self._vector(pred, k)
            norm_p = math.sqrt(sum(v * v for v in vp.values()))
            for r in rs:
                vr = self._vector(r, k)
                dot = sum(min(vp[g], vr[g]) * vr[g] for g in vp if g in vr)
                norm = norm_p * math.sqrt(sum(v * v for v in vr.values()))
                delta = len(normalize(pred).split()) - len(normalize(r).split())
                total += ((dot / norm if norm else 0.0) * math.exp(-delta * delta / (2 * self.sigma ** 2))
                          / self.n / len(rs))
        return 10.0 * total


def cider(preds: list[str], refs: list, n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D of the predictions, document frequencies over the references given (`CiderD`)."""
    scorer = CiderD(refs, n, sigma)
    return sum(scorer.score(p, r) for p, r in zip(preds, refs)) / max(1, len(refs))


def rouge_l(preds: list[str], refs: list[str]) -> float:
    """Mean ROUGE-L F1."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return sum(scorer.score_multi(several(r), p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / max(1, len(refs))


def mean_ap(preds: list[list], refs: list[list], key: str = "map") -> float:
    """COCO mAP@[.5:.95] of detections (`key="map_50"`: mAP at IoU 0.5): each prediction and
    reference a list of (box, label); a generated object has score 1 (the sequence carries no
    per-object confidence)."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    labels: dict[str, int] = {}

    def target(objs, scored):
        boxes = torch.tensor([list(b) for b, _ in objs], dtype=torch.float32).reshape(-1, 4)
        ids = torch.tensor([labels.setdefault(normalize(lab), len(labels)) for _, lab in objs], dtype=torch.long)
        out = {"boxes": boxes, "labels": ids}
        if scored:
            out["scores"] = torch.ones(len(objs))
        return out

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    metric.update([target(p or [], True) for p in preds], [target(r, False) for r in refs])
    value = float(metric.compute()[key])
    return max(0.0, value)  # -1: no reference objects at all


def sql_execution(preds: list[str], refs: list[tuple]) -> float:
    """Execution accuracy: the predicted SQL returns the same rows as the reference SQL on the
    example's database (a sqlite file path, or the STRUCT database with its content loaded into
    an in-memory sqlite).  Rows compare as multisets unless the reference orders them."""
    from .sql import execution_match

    return sum(execution_match(p, sql, db) for p, (sql, db) in zip(preds, refs)) / max(1, len(refs))


def _image_pairs(preds: list, refs: list):
    import numpy as np

    pairs = [(np.asarray(p, dtype=np.float64) / 255.0, np.asarray(r, dtype=np.float64) / 255.0)
             for p, r in zip(preds, refs) if p is not None and r is not None]
    if len(pairs) < len(refs):
        raise ValueError(f"{len(refs) - len(pairs)} of {len(refs)} examples have no generated or reference image")
    return pairs


def psnr(preds: list, refs: list) -> float:
    """Mean PSNR (dB) of generated images against their references (uint8 [S, S, 3] each; a
    perfect copy counts as 100 dB)."""
    import math

    import numpy as np

    values = [10 * math.log10(1.0 / max(float(np.mean((p - r) ** 2)), 1e-10)) for p, r in _image_pairs(preds, refs)]
    return sum(values) / max(1, len(values))


def ssim(preds: list, refs: list) -> float:
    """Mean SSIM (torchmetrics, Gaussian window) of generated images against their references."""
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure

    pairs = _image_pairs(preds, refs)
    if not pairs:
        return 0.0
    import numpy as np

    p = torch.from_numpy(np.stack([a for a, _ in pairs])).permute(0, 3, 1, 2)
    r = torch.from_numpy(np.stack([b for _, b in pairs])).permute(0, 3, 1, 2)
    return float(structural_similarity_index_measure(p.float(), r.float(), data_range=1.0))


def mpjpe(preds: list, refs: list) -> float:
    """Mean per-joint position error (in the skeleton's units, e.g. cm) of generated motions
    against their reference clips, over the frames that were not given (in-betweening: the
    missing frames; otherwise all), joints and End Sites alike, each clip cut to the shorter of
    the two.  A motion's positions come from its forward kinematics."""
    import numpy as np

    total, count = 0.0, 0
    for pred, ref in zip(preds, refs):
        if pred is None or ref is None:
            continue
        features, known = ref
        truth = type(pred)(pred.skeleton, features, known).positions()
        got = pred.positions()
        n = min(len(got), len(truth))
        free = np.ones(n, bool) if known is None else ~np.asarray(known[:n], bool)
        if free.any():
            total += float(np.linalg.norm(got[:n][free] - truth[:n][free], axis=-1).mean()) * int(free.sum())
            count += int(free.sum())
    return total / count if count else float("nan")


METRICS = {"accuracy": accuracy, "exact_match": accuracy, "bleu": bleu, "wer": wer, "cider": cider,
           "iou_acc": iou_acc, "rouge": rouge_l, "map": mean_ap,
           "map50": lambda preds, refs: mean_ap(preds, refs, "map_50"), "sql_execution": sql_execution,
           "psnr": psnr, "ssim": ssim, "mcd": lambda preds, refs: _speech().mcd(preds, refs), "mpjpe": mpjpe,
           "matthews_corrcoef": matthews_corrcoef, "vqa_score": vqa_score, "f_measure": f_measure,
           "solved_acc": solved_acc, "cell_acc": cell_acc}
LOWER_IS_BETTER = {"wer", "mcd", "mpjpe"}



def _speech():
    from . import speech  # MCD and its alignment: torchaudio, imported when a speech task is scored

    return speech


def task_metric(scores: dict) -> str | None:
    """The name of a task's own metric among its validation scores (every task also reports
    its loss and token accuracy); None for a task scored by loss alone."""
    return next((k for k in scores if k not in ("loss", "token_accuracy")), None)
