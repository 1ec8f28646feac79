"""Python's garbage collector as the long-running processes (API,
dispatcher) set it.

The default young generation (700 allocations) makes a busy process run a
full collection every few hundred requests or sends, each walking every
object of the process: the API's p99 at 64 connections was 64 ms. With the
start's objects frozen and a larger young generation it was 24 ms, with a
third more requests per second (bench/README.md, issue 12). Reference
counting still frees almost everything at once; only cycles wait longer,
and the collector still runs every 50,000 allocations.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def collect_less() -> None:
    """Call once the process has started (what it made then lives as long as it)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
