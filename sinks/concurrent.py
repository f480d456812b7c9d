"""Several sinks written at the same time: `ConcurrentSinks([a, b])` gives every batch to each of them,
each in its own thread, and returns once all of them have written it (or raises the first error).

Bytewax calls a worker's sinks one after the other, so the live flow used to wait for the monitor
topic's acknowledgements and then for PostgreSQL. Both mostly wait on another process (the broker, the
database server), which does not hold the GIL, so written together a batch costs about the slower of
the two instead of their sum (benchmarks/README.md, "Dataflow"). Each inner sink keeps its own
guarantees: a write returns only once its records are acknowledged (at-least-once), outages are waited
out and poison records dead-lettered by the sink itself.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition


class _ConcurrentPartition(StatelessSinkPartition[Any]):
    def __init__(self, parts: list[StatelessSinkPartition[Any]]) -> None:
        self._parts = parts
        self._pool = ThreadPoolExecutor(max(1, len(parts) - 1), thread_name_prefix="sink-write")

    def write_batch(self, items: list[Any]) -> None:
        first, *others = self._parts
        futures = [self._pool.submit(part.write_batch, items) for part in others]
        error: BaseException | None = None
        try:
            first.write_batch(items)  # in the worker's own thread
        except BaseException as e:
            error = e
        for future in futures:  # wait for every write, even after an error: none is left half done
            try:
                future.result()
            except BaseException as e:
                error = error or e
        if error is not None:
            raise error

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        error: BaseException | None = None
        for part in self._parts:
            try:
                part.close()
            except BaseException as e:
                error = error or e
        if error is not None:
            raise error


class ConcurrentSinks(DynamicSink[Any]):
    """The same items to several sinks, written concurrently (see the module doc)."""

    def __init__(self, sinks: list[DynamicSink[Any]]) -> None:
        if not sinks:
            raise ValueError("ConcurrentSinks needs at least one sink")
        self.sinks = list(sinks)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ConcurrentPartition:
        return _ConcurrentPartition([s.build(step_id, worker_index, worker_count) for s in self.sinks])


__all__ = ["ConcurrentSinks"]
