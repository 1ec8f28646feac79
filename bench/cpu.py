"""CPU meters: the cores used by process trees and by the whole machine over a
span, read from /proc (Linux)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        parents[int(entry.name)] = int(fields[1])
        # utime + stime + cutime + cstime: a child that exited and was reaped
        # moves its time to its parent, so the tree's total never goes back.
        times[int(entry.name)] = sum(int(v) for v in fields[11:15]) / _TICK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo += [c for c, parent in parents.items() if parent == p]
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _cores(before: tuple[float, float], after: tuple[float, float]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1]) * (os.cpu_count() or 1)


def busy_cores(seconds: float) -> float:
    """Cores the machine keeps busy over the next `seconds` (others' work,
    when measured before a bench starts anything)."""
    before = machine_cpu()
    time.sleep(seconds)
    return _cores(before, machine_cpu())


class CpuMeter:
    """CPU used by some process trees and by the whole machine over a span."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = time.monotonic()
        self.before = {k: tree_cpu_seconds(p) for k, p in pids.items()}
        self.machine_before = machine_cpu()

    def stop(self) -> dict[str, float]:
        """Cores used on average: per tree, and 'machine' for all of it."""
        elapsed = time.monotonic() - self.start
        self.elapsed = elapsed  # the span, to turn cores back into CPU seconds
        out = {k: (tree_cpu_seconds(p) - self.before[k]) / elapsed for k, p in self.pids.items()}
        out["machine"] = _cores(self.machine_before, machine_cpu())
        return out


def postgres_pid() -> int:
    """PostgreSQL's postmaster: its tree holds every backend."""
    out = subprocess.run(["pgrep", "-o", "-x", "postgres"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.stdout.strip() else 0
