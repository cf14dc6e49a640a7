"""The training display: a live rich table on a terminal (one row per task: loss, tokens/s,
last validation metric; the step, learning rate and ETA), plain periodic lines otherwise."""
from __future__ import annotations

import time

from rich.live import Live
from rich.table import Table


class TrainDisplay:
    def __init__(self, console, total_steps: int, metrics: dict[str, str]):
        self.console, self.total, self.metrics = console, total_steps, metrics
        self.rows: dict[str, dict] = {t: {} for t in metrics}
        self.last: dict = {}
        self.start = time.perf_counter()
        self.first_step: int | None = None
        self.every = max(1, total_steps // 20)
        self.live = Live(self._table(), console=console, refresh_per_second=4, transient=False) \
            if console.is_terminal else None
        if self.live:
            self.live.start()

    def __call__(self, record: dict) -> None:
        if "valid" in record:
            for task, values in record["valid"].items():
                row = self.rows.setdefault(task, {})
                name = self.metrics.get(task)
                row["valid"] = values.get(name, values.get("loss"))
                row["valid_name"] = name if name in values else "valid loss"
            if not self.live:
                self.console.print(f"step {record['step']}: " + "; ".join(
                    f"{t} {r['valid_name']} {r['valid']:.3f}" for t, r in self.rows.items() if "valid" in r),
                    highlight=False)
        else:
            self.last = record
            self.first_step = self.first_step if self.first_step is not None else record["step"] - 1
            for task, nll in record.get("tasks", {}).items():
                row = self.rows.setdefault(task, {})
                row["loss"] = nll
                row["tps"] = record.get("task_tokens_per_s", {}).get(task, record["tokens_per_s"])
            if not self.live and (record["step"] % self.every == 0 or record["step"] == self.total):
                self.console.print(self._line(), highlight=False)
        if self.live:
            self.live.update(self._table())

    def _eta(self) -> str:
        if not self.last or self.first_step is None:
            return "?"
        done = self.last["step"] - self.first_step
        left = self.total - self.last["step"]
        seconds = (time.perf_counter() - self.start) / max(1, done) * left
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

    def _line(self) -> str:
        r = self.last
        return (f"step {r['step']}/{self.total} loss {r['loss']:.3f} lr {r['lr']:.2e} "
                f"{r['tokens_per_s']:.0f} tok/s eta {self._eta()}")

    def _table(self) -> Table:
        title = self._line() if self.last else f"step 0/{self.total}"
        table = Table("task", "train NLL", "tokens/s", "last validation", title=title, title_justify="left")
        for task, row in self.rows.items():
            valid = f"{row['valid_name']} {row['valid']:.3f}" if "valid" in row else "-"
            table.add_row(task, f"{row['loss']:.3f}" if "loss" in row else "-",
                          f"{row['tps']:.0f}" if "tps" in row else "-", valid)
        return table

    def close(self) -> None:
        if self.live:
            self.live.stop()
