"""The garbage collector's pace for a process that runs batches.

A batch keeps up to ``concurrency`` operations in flight, each a few hundred
container objects while it runs (coroutines, futures, timers, the HTTP client's
request and response). At CPython's default first threshold (700 allocations
net of frees) the cyclic collector runs every few refreshes, finds the objects
of the operations in flight still alive, promotes them, and walks them again in
the older generations: measured at 20,000 tokens and concurrency 128, 30% of a
refresh run's time. The objects themselves are freed by reference counting as
each operation ends; only reference cycles wait for the collector, and they still
get collected, a little later.
"""

from __future__ import annotations

import gc

__all__ = ["BATCH_GC_THRESHOLD", "tune_collector"]

#: The collector's first threshold a batch process runs with (CPython's default: 700).
BATCH_GC_THRESHOLD = 10_000


def tune_collector(threshold: int = BATCH_GC_THRESHOLD) -> tuple[int, int, int]:
    """Raise this process's first collector threshold to ``threshold``; the thresholds before.

    ``flowengine batch`` calls it for its own process. A program that runs batches
    in a process of its own may call it too (and ``gc.set_threshold(*before)`` to
    go back). A threshold already higher is kept; the older generations' are not
    touched. Not for a process that also serves other work: the setting is the
    whole interpreter's.
    """
    before = gc.get_threshold()
    first, *older = before
    gc.set_threshold(max(first, threshold), *older)
    return before
