"""ConcurrentSinks: every inner sink gets every batch, the writes run at the same time, and a batch is
done only when all of them are (errors of any inner sink stop the flow)."""

from __future__ import annotations

import threading
import traceback
from typing import Any

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main

from sinks.concurrent import ConcurrentSinks


class _Part(StatelessSinkPartition[Any]):
    def __init__(self, sink: _Recording) -> None:
        self.sink = sink

    def write_batch(self, items: list[Any]) -> None:
        if self.sink.barrier is not None:
            self.sink.barrier.wait()  # passes only while the other sink writes the same batch
        if self.sink.fail:
            raise RuntimeError("refused")
        self.sink.written.extend(items)
        self.sink.threads.add(threading.get_ident())

    def close(self) -> None:
        self.sink.closed = True


class _Recording(DynamicSink[Any]):
    def __init__(self, barrier: threading.Barrier | None = None, fail: bool = False) -> None:
        self.barrier, self.fail = barrier, fail
        self.written: list[Any] = []
        self.threads: set[int] = set()
        self.closed = False

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
        return _Part(self)


def _run(sink: DynamicSink[Any], items: list[int]) -> None:
    flow = Dataflow("concurrent")
    op.output("out", op.input("in", flow, TestingSource(items, batch_size=10)), sink)
    run_main(flow)


def test_every_sink_gets_every_item_written_at_the_same_time() -> None:
    barrier = threading.Barrier(2, timeout=30)
    a, b = _Recording(barrier), _Recording(barrier)
    plain: list[int] = []
    _run(ConcurrentSinks([a, b, TestingSink(plain)]), list(range(35)))
    assert a.written == b.written == plain == list(range(35))
    assert a.threads.isdisjoint(b.threads)  # two threads, each waiting for the other at the barrier
    assert a.closed and b.closed


def test_an_error_of_one_sink_stops_the_flow_after_the_others_wrote_the_batch() -> None:
    ok, failing = _Recording(), _Recording(fail=True)
    with pytest.raises(Exception, match="error writing output batch") as raised:
        _run(ConcurrentSinks([failing, ok]), [1, 2, 3])
    assert "RuntimeError: refused" in "".join(traceback.format_exception(raised.value))
    assert ok.written == [1, 2, 3]  # the batch was not left half written by the others
