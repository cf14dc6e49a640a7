"""CPU threads under load.  PyTorch's OpenMP threads spin at every barrier, waiting for each
other: with another process on one of the cores, every parallel region waits for the thread that
shares its core, and a 2-core training run fell to a fourth of its speed.  Two remedies, both
measured by `benchmarks/contention.py`:

- `openmp_defaults()`, before torch loads: OpenMP threads spin for a short while
  (GOMP_SPINCOUNT=10000) and then sleep, instead of spinning for 300,000 iterations;
- `govern()`, called between updates and batches: the threads of this process follow the cores
  other processes leave free (their load read from /proc, this process and its children aside),
  logged when they change.  `OFAC_THREADS=N` pins them (and `OFAC_THREADS=auto` is the default).

A run whose thread count changes computes its sums in another order: its weights are then
equal to an unloaded run's up to rounding, not bitwise (pin the threads for bitwise resumes)."""
from __future__ import annotations

import os
import time

from .errors import DataError

CHECK_SECONDS = 2.0


def openmp_defaults() -> None:
    """Short spin-then-sleep waits for OpenMP threads, unless the user chose a policy.  Only
    effective before torch (its OpenMP runtime) is loaded."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def _setting() -> int | None:
    """OFAC_THREADS: None for auto, else the pinned thread count."""
    value = os.environ.get("OFAC_THREADS", "auto").strip()
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise DataError("E0121", f"OFAC_THREADS={value!r} is neither `auto` nor a number of threads",
                        help="unset it (auto: follow the free cores), or give a whole number such as OFAC_THREADS=2")
    return int(value)


def _busy_jiffies() -> int:
    """CPU time (clock ticks) all processes spent on the CPUs this process may run on, from the
    per-CPU lines of /proc/stat."""
    mine = {f"cpu{c}" for c in os.sched_getaffinity(0)}
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name in mine:
                v = [int(x) for x in values[:8]]
                total += sum(v) - v[3] - v[4]  # less idle and iowait
    return total


def _process_jiffies(pid: int | str) -> tuple[int, int]:
    """(parent pid, user + system ticks) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _own_jiffies() -> int:
    """Ticks of this process and its children (data-loader workers, torchrun's ranks are not ours)."""
    me = os.getpid()
    total = _process_jiffies(me)[1]
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != me:
            try:
                parent, ticks = _process_jiffies(pid)
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
            if parent == me:
                total += ticks
    return total


class Governor:
    """Keeps torch's intra-op threads at the cores others leave free (see the module's text)."""

    def __init__(self, threads: int, cores: int, pinned: bool, log=None, clock=time.monotonic,
                 busy=_busy_jiffies, own=_own_jiffies, ticks: int | None = None):
        self.full, self.cores, self.pinned = threads, cores, pinned
        self.log = log or (lambda msg: None)
        self.clock, self.busy, self.own = clock, busy, own
        self.ticks = ticks or os.sysconf("SC_CLK_TCK")
        self.at, self.last = clock(), (busy(), own())
        self.others = 0.0

    def check(self, set_threads, get_threads) -> int:
        """Every CHECK_SECONDS: the cores other processes took since the last look, and the
        threads that leaves; -> the thread count in use."""
        now = self.clock()
        if self.pinned or now - self.at < CHECK_SECONDS:
            return get_threads()
        busy, own = self.busy(), self.own()
        elapsed = now - self.at
        self.others = max(0.0, ((busy - self.last[0]) - (own - self.last[1])) / self.ticks / elapsed)
        self.at, self.last = now, (busy, own)
        want = max(1, min(self.full, int(self.cores - self.others + 0.5)))
        if want != get_threads():
            set_threads(want)
            self.log(f"other processes take {self.others:.1f} of {self.cores} cores: computing on {want} "
                     f"thread{'s' * (want > 1)}")
        return want


_governor: Governor | None = None


def govern(log=None) -> int:
    """Follow the free cores (call between updates or batches; cheap); -> threads in use."""
    import torch

    global _governor
    if _governor is None:
        pinned = _setting()
        if pinned is not None:
            torch.set_num_threads(pinned)
        try:
            cores = len(os.sched_getaffinity(0))
            _governor = Governor(torch.get_num_threads(), cores, pinned is not None or not os.path.exists("/proc/stat"))
        except (OSError, AttributeError):  # no /proc (not Linux): leave the threads alone
            _governor = Governor(torch.get_num_threads(), 1, True, busy=lambda: 0, own=lambda: 0, ticks=100)
    if log is not None:
        _governor.log = log
    return _governor.check(torch.set_num_threads, torch.get_num_threads)
