"""The figures: percentiles, ratios, and the block each bench prints at the end
with the commit measured and how busy the machine was before it started."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def collapsed_stacks(path: str) -> Iterator[tuple[list[str], int]]:
    """py-spy's collapsed stacks (`--format raw`): each stack's frames, root
    first, and its sample count."""
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if count.isdigit():
                yield stack.split(";"), int(count)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def git_revision() -> str:
    """The commit measured, with '+changes' when the work tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "service"],
                           cwd=PROJECT_DIR, capture_output=True, text=True).stdout.strip()
    return f"{head or '?'}{' +changes in service/' if dirty else ''}"


# Read at import, that is when the bench starts: the code may change under a
# long run, and the block names what was there at the start.
_REVISION = git_revision()
_BACKGROUND: list[float] = []


def note_background(cores: float) -> None:
    """Cores busy before the bench started anything, for the block's notes."""
    _BACKGROUND.append(cores)


def print_block(title: str, rows: list[tuple[str, str]], notes: Sequence[str] = ()) -> None:
    notes = [*notes, f"code measured: commit {_REVISION} (at the bench's start)"]
    if _BACKGROUND:
        notes.append(f"background load before the bench started: {_BACKGROUND[0]:.2f} "
                     f"cores busy (of {os.cpu_count()})")
    width = max(len(k) for k, _ in rows)
    print()
    print("=" * 78)
    print(f"{title}   ({time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores)")
    print("-" * 78)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    for note in notes:
        print(f"  * {note}")
    print("=" * 78, flush=True)
