"""A sink written in the background while the flow goes on, acknowledged before its epoch closes.

Bytewax calls a sink on the worker's thread and takes the batch as done when `write_batch` returns, so
the live flow used to stop at every batch until the monitor topic and PostgreSQL had acknowledged it:
a third of the live run's wall time was the worker waiting (benchmarks/README.md, "Issue 14: the live
sinks overlapped"). `OverlappedSink(inner, parts)` hands each batch to a writer thread (one per worker)
and returns at once; the writer writes what has piled up through the inner sink, in the order it was
handed over, while the worker computes the next batch.

The promise is kept by the epoch: this is a partitioned (stateful) sink, and bytewax asks each of its
partitions for a snapshot when an epoch closes, before it commits the epoch (the input offsets that a
restart resumes from). `snapshot()` returns only once everything handed over has been acknowledged by
the inner sink, so no epoch is committed with an event of it unwritten; a write that fails fails the
flow at the next batch or snapshot, before its epoch commits, and a restart writes it again
(at-least-once, as before). The writer holds at most `max_pending` items: past that, the worker waits.

Partitions: an event goes to the partition of its conversation's shard, so one conversation's events
(from the sessions step, the desk and the gaps step alike) are written in the order they were produced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # items handed over and not yet written, per worker, before the worker waits


class _Writer:
    """One worker's writer thread: `put` hands items over, `wait` returns once all are written."""

    def __init__(self, part: StatelessSinkPartition[Any], max_pending: int) -> None:
        self._part = part
        self._max_pending = max_pending
        self._changed = threading.Condition()
        self._pending: list[Any] = []
        self._writing = False
        self._error: BaseException | None = None
        self._reported = False  # the error was raised to the worker
        self._closing = False
        self.users = 0  # partitions of this worker that use this writer (`OverlappedSink.build_part`)
        self._thread = threading.Thread(target=self._run, name="sink-overlap", daemon=True)
        self._thread.start()

    def put(self, items: list[Any]) -> None:
        with self._changed:
            while len(self._pending) >= self._max_pending and self._error is None:
                self._changed.wait()
            self._raise_error()
            self._pending.extend(items)
            self._changed.notify_all()

    def wait(self) -> None:
        """Until everything handed over is written (raises the writer's error, if it had one)."""
        with self._changed:
            while (self._pending or self._writing) and self._error is None:
                self._changed.wait()
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            self._reported = True
            raise RuntimeError("an earlier batch of this sink was not written") from self._error

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closing:
                    self._changed.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                self._writing = True
                self._changed.notify_all()  # room for the worker again
            try:
                self._part.write_batch(batch)
            except BaseException as e:  # kept for the worker, which fails the flow with it
                with self._changed:
                    self._error, self._writing = e, False
                    self._pending.clear()
                    self._changed.notify_all()
                return
            with self._changed:
                self._writing = False
                self._changed.notify_all()

    def release(self) -> None:
        """One of its partitions is closed; the last one closes the writer after its last write. Never
        raises: bytewax closes partitions while it tears the flow down, where an exception aborts the
        process; a failed write has failed the flow already (at its next batch or snapshot)."""
        with self._changed:
            self.users -= 1
            if self.users > 0:
                return
            while (self._pending or self._writing) and self._error is None:
                self._changed.wait()
            if self._error is not None and not self._reported:
                log.error("a batch of events was not written: %r", self._error)
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        try:
            self._part.close()
        except Exception:
            log.exception("closing the sink failed")


class _OverlappedPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    def write_batch(self, values: list[Any]) -> None:
        self._writer.put(values)

    def snapshot(self) -> None:
        self._writer.wait()  # the epoch closes only once its items are acknowledged (see the module doc)
        return None

    def close(self) -> None:
        self._writer.release()


class OverlappedSink(FixedPartitionedSink[Any, None]):
    """`inner` written in the background, acknowledged by each epoch's close (see the module doc). Takes
    `(partition key, item)` pairs: `key_of(item)` gives the key (`keyed`), one of `parts` keys."""

    def __init__(
        self,
        inner: DynamicSink[Any],
        parts: int,
        key_of: Callable[[Any], str],
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.inner = inner
        self.parts = [str(i) for i in range(parts)]
        self.key_of = key_of
        self.max_pending = max_pending
        self._writers: dict[int, _Writer] = {}  # worker thread -> its writer
        self._lock = threading.Lock()

    def keyed(self, items: list[Any]) -> list[tuple[str, Any]]:
        key_of = self.key_of
        return [(key_of(item), item) for item in items]

    def list_parts(self) -> list[str]:
        return self.parts

    def part_fn(self, item_key: str) -> int:
        return int(item_key)  # called for every item: the key is the partition's number

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _OverlappedPartition:
        # Bytewax builds a worker's partitions on that worker's thread: they share its writer.
        thread = threading.get_ident()
        with self._lock:
            writer = self._writers.get(thread)
            if writer is None or writer.users == 0:  # (a thread of an earlier run may have had this id)
                # (our inner sinks do not use the worker index: a number unique in this process)
                part = self.inner.build(step_id, len(self._writers), 1)
                writer = self._writers[thread] = _Writer(part, self.max_pending)
            writer.users += 1
        return _OverlappedPartition(writer)


__all__ = ["MAX_PENDING", "OverlappedSink"]
