"""The garbage collector's policy in a dataflow process (live, a replay, a replay's worker).

A dataflow holds a large, long-lived state (every open conversation's subject, timers, satisfaction)
and allocates many short-lived objects per record (items, events, their bytes), few of them in
reference cycles. With CPython's default threshold (a young collection every 700 allocations) the
collector's work grows with the heap: a replay of a million records spent a third of its time in it
(benchmarks/README.md, "Replay of a big day"). The young generation's threshold is raised
(`WORKTOOL_GC_THRESHOLD`, 0 = Python's default), which costs memory only for garbage held in reference
cycles until the next collection (reference counting frees the rest at once). Freezing the objects alive
after start-up (`gc.freeze`) was measured too and gained nothing beyond the noise, so it is not done.
"""

from __future__ import annotations

import gc

PYTHON_DEFAULT = 700  # CPython 3.11's young-generation threshold


def tune_collector(threshold: int) -> tuple[int, int, int]:
    """Apply the policy to this process; returns the thresholds now in force."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold or PYTHON_DEFAULT, gen1, gen2)
    return gc.get_threshold()


__all__ = ["PYTHON_DEFAULT", "tune_collector"]
