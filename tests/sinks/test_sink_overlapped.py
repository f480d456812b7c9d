"""OverlappedSink: batches are written in the background, in order per partition key, and an epoch
closes only once everything handed over is written, so a write that fails is written again by the
restart (nothing acknowledged-and-committed is lost)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main

from sinks.overlapped import OverlappedSink, _OverlappedPartition, _Writer


class _Part(StatelessSinkPartition[Any]):
    def __init__(self, sink: _Inner) -> None:
        self.sink = sink

    def write_batch(self, items: list[Any]) -> None:
        self.sink.threads.add(threading.get_ident())
        self.sink.release.wait(30)
        time.sleep(self.sink.delay)
        if self.sink.fail_on is not None and self.sink.fail_on in items:
            raise RuntimeError("refused")
        self.sink.written.extend(items)

    def close(self) -> None:
        self.sink.closed += 1


class _Inner(DynamicSink[Any]):
    def __init__(self, delay: float = 0.0, fail_on: Any = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.written: list[Any] = []
        self.threads: set[int] = set()
        self.closed = 0
        self.release = threading.Event()
        self.release.set()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
        return _Part(self)


def _flow(items: list[int], sink: OverlappedSink, batch_size: int = 10) -> Dataflow:
    flow = Dataflow("overlapped")
    stream = op.input("in", flow, TestingSource(items, batch_size=batch_size))
    op.output("out", op.flat_map_batch("keyed", stream, sink.keyed), sink)
    return flow


def _by_parity(n: int) -> str:
    return str(n % 2)


def test_every_item_is_written_in_order_per_key_by_another_thread() -> None:
    inner = _Inner()
    run_main(_flow(list(range(500)), OverlappedSink(inner, 2, _by_parity)))
    assert sorted(inner.written) == list(range(500))
    for parity in (0, 1):  # one key's items in the order they came
        assert [n for n in inner.written if n % 2 == parity] == list(range(parity, 500, 2))
    assert threading.get_ident() not in inner.threads
    assert inner.closed == 1  # one writer for the worker's two partitions, closed once


def test_write_returns_at_once_and_snapshot_waits_for_the_write() -> None:
    inner = _Inner()
    inner.release.clear()  # the inner sink is stuck until released
    writer = _Writer(inner.build("out", 0, 1), max_pending=100)
    writer.users = 1
    part = _OverlappedPartition(writer)
    part.write_batch([1, 2, 3])  # returns although nothing is written yet
    snapped = threading.Event()
    waiter = threading.Thread(target=lambda: (part.snapshot(), snapped.set()))
    waiter.start()
    assert not snapped.wait(0.3)  # the epoch cannot close while its items are unacknowledged
    inner.release.set()
    assert snapped.wait(10)
    assert inner.written == [1, 2, 3]
    part.close()
    assert inner.closed == 1


def test_the_worker_waits_when_too_much_is_pending() -> None:
    inner = _Inner()
    inner.release.clear()
    writer = _Writer(inner.build("out", 0, 1), max_pending=5)
    writer.users = 1
    writer.put([0])  # taken by the writer thread, which blocks in the inner sink
    deadline = time.monotonic() + 5
    while not inner.threads and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.put(list(range(1, 6)))  # five pending: the limit
    done = threading.Event()
    threading.Thread(target=lambda: (writer.put([6]), done.set()), daemon=True).start()
    assert not done.wait(0.3)
    inner.release.set()
    assert done.wait(10)
    writer.release()
    assert inner.written == list(range(7))


def test_a_failed_write_fails_the_flow() -> None:
    inner = _Inner(fail_on=37)
    with pytest.raises(RuntimeError) as raised:  # BytewaxRuntimeError when a snapshot raised it
        run_main(_flow(list(range(200)), OverlappedSink(inner, 2, _by_parity)))
    chain, e = [], raised.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("refused" in text or "not written" in text for text in chain)
    assert 37 not in inner.written


def test_a_restart_after_a_failed_write_loses_nothing(tmp_path: Path) -> None:
    """A slow sink fails in the middle; epochs close every batch. Had an epoch closed before its
    items were written, the restart would begin after them and they would never be written."""
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    items = list(range(300))
    written: list[int] = []
    first = _Inner(delay=0.02, fail_on=150)
    first.written = written
    with pytest.raises(RuntimeError):
        run_main(
            _flow(items, OverlappedSink(first, 2, _by_parity)),
            epoch_interval=timedelta(0),
            recovery_config=recovery,
        )
    assert 150 not in written
    again = _Inner()
    again.written = written
    run_main(
        _flow(items, OverlappedSink(again, 2, _by_parity)),
        epoch_interval=timedelta(0),
        recovery_config=recovery,
    )
    assert set(written) == set(items)  # at least once: some items of the failed epoch twice
