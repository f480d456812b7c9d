"""The `entry_point` fixture (tests/conftest.py) runs flows the way it says: the promised number of
worker threads, and epoch interval and recovery passed through."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource

from tests.support import SINGLE_WORKER, EntryPoint


class _WorkerTaggingSink(DynamicSink[Any]):
    """Records (worker_index, item) for every item written, from whichever worker wrote it."""

    def __init__(self, out: list[tuple[int, Any]]) -> None:
        self.out = out

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Any]:
        out = self.out

        class Partition(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                out.extend((worker_index, item) for item in items)

        return Partition()


def test_runs_the_promised_number_of_workers(entry_point: EntryPoint) -> None:
    out: list[tuple[int, Any]] = []
    flow = Dataflow("workers")
    spread = op.redistribute("spread", op.input("in", flow, TestingSource(range(200))))
    op.output("out", spread, _WorkerTaggingSink(out))
    entry_point(flow)

    assert sorted(item for _, item in out) == list(range(200))
    assert {worker for worker, _ in out} == set(range(entry_point.workers))


@pytest.mark.parametrize("entry_point", SINGLE_WORKER, indirect=True)
def test_passes_epoch_interval_and_recovery_through(entry_point: EntryPoint, tmp_path: Any) -> None:
    init_db_dir(tmp_path, 1)
    items = [0, 1, 2, TestingSource.ABORT(), 3, 4]
    out: list[int] = []

    def run() -> None:
        flow = Dataflow("resume")
        op.output("out", op.input("in", flow, TestingSource(items)), TestingSink(out))
        entry_point(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))

    run()  # aborts after 0, 1, 2
    assert out == [0, 1, 2]
    run()  # 0 s epochs: resumes right after the abort, nothing written twice
    assert out == [0, 1, 2, 3, 4]
