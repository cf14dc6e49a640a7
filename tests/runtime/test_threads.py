"""CPU threads under load (runtime/threads.py): short OpenMP spins before torch loads, and
intra-op threads that follow the cores other processes leave free."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from ofac.runtime import threads


class Fake:
    """A clock and tick counters to drive the governor (100 ticks a second)."""

    def __init__(self):
        self.t, self.busy, self.own = 0.0, 0, 0

    def advance(self, seconds: float, others: float, own: float = 1.0):
        self.t += seconds
        self.busy += int(100 * seconds * (others + own))
        self.own += int(100 * seconds * own)


def governor(fake: Fake, pinned=False, said=None):
    return threads.Governor(2, 2, pinned, log=(said.append if said is not None else None), clock=lambda: fake.t,
                            busy=lambda: fake.busy, own=lambda: fake.own, ticks=100)


def test_threads_follow_the_cores_other_processes_leave():
    fake, said, count = Fake(), [], [2]
    g = governor(fake, said=said)
    use = (lambda n: count.__setitem__(0, n)), (lambda: count[0])
    fake.advance(3, others=1.0)  # another process took a core
    assert g.check(*use) == 1 and count == [1]
    assert said == ["other processes take 1.0 of 2 cores: computing on 1 thread"]
    fake.advance(1, others=0.0)  # looked at every CHECK_SECONDS only
    assert g.check(*use) == 1
    fake.advance(3, others=0.1)  # it left
    assert g.check(*use) == 2 and count == [2] and len(said) == 2
    fake.advance(3, others=0.3)  # a light neighbour keeps both threads
    assert g.check(*use) == 2 and len(said) == 2


def test_pinned_threads_never_change(monkeypatch):
    fake, count = Fake(), [2]
    g = governor(fake, pinned=True)
    fake.advance(5, others=1.0)
    assert g.check(lambda n: count.__setitem__(0, n), lambda: count[0]) == 2 and count == [2]
    monkeypatch.setenv("OFAC_THREADS", "many")
    from ofac.runtime.errors import DataError

    with pytest.raises(DataError) as err:
        threads._setting()
    assert err.value.diagnostic.code == "E0121"


def test_openmp_waits_briefly_unless_the_user_chose():
    code = "import os, ofac.runtime; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "10000"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True,
                         text=True)
    assert out.stdout.strip() == "None"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_a_foreign_busy_process_is_seen_and_a_busy_child_is_not(monkeypatch):
    """Real /proc readings: a spinning process this one did not start takes a core from it; one
    it started (as a data-loader worker is) does not."""
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.5)
    spin = "import time\nt = time.time()\nwhile time.time() - t < 8: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        g = threads.Governor(2, 2, False)
        time.sleep(1.0)
        g.check(lambda n: None, lambda: 2)
        assert g.others < 0.5, g.others  # our own child
    finally:
        child.kill()
        child.wait()
    # started through a shell that exits at once: reparented, no longer ours
    subprocess.run(["sh", "-c", f"{sys.executable} -c '{spin}' >/dev/null 2>&1 &"], check=True)
    g = threads.Governor(2, 2, False)
    time.sleep(1.0)
    count = [2]
    assert g.check(lambda n: count.__setitem__(0, n), lambda: count[0]) == 1 and g.others > 0.6
    subprocess.run(["pkill", "-f", "while time.time() - t < 8"], check=False)


def test_govern_pins_to_ofac_threads(monkeypatch):
    monkeypatch.setattr(threads, "_governor", None)
    monkeypatch.setenv("OFAC_THREADS", "1")
    before = torch.get_num_threads()
    try:
        assert threads.govern() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        threads._governor = None
