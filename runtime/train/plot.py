"""`ofac plot RUN_DIR`: PNG curves of a run's metrics.jsonl — training loss per task, the
learning rate, and each task's validation loss and metric."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    path = run / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run} a run directory?")
    steps, valids = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        (valids if "valid" in record else steps).append(record)
    return steps, valids


def plot(run: Path, out: Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, valids = read_metrics(run)
    out = out or run / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = []

    fig, (ax, lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 1))
    tasks = sorted({t for r in steps for t in r.get("tasks", {})})
    for task in tasks:
        xs = [r["step"] for r in steps if task in r["tasks"]]
        ax.plot(xs, [r["tasks"][task] for r in steps if task in r["tasks"]], label=task)
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], "k--", alpha=0.6,
            label="all tasks (label-smoothed loss)")
    ax.set_ylabel("training NLL per token")
    ax.legend(fontsize=8)
    lr.plot([r["step"] for r in steps], [r["lr"] for r in steps])
    lr.set_ylabel("lr")
    lr.set_xlabel("update")
    fig.tight_layout()
    written.append(out / "train.png")
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    for task in sorted({t for r in valids for t in r["valid"]}):
        rows = [r for r in valids if task in r["valid"]]
        names = [k for k in rows[-1]["valid"][task]]
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3))
        for axis, name in zip(axes if len(names) > 1 else [axes], names):
            axis.plot([r["step"] for r in rows], [r["valid"][task].get(name) for r in rows], marker="o")
            axis.set_title(f"{task}: {name}")
            axis.set_xlabel("update")
        fig.tight_layout()
        written.append(out / f"valid_{task}.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written
