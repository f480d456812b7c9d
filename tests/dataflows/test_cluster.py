"""The dataflow as a cluster of processes (dataflows/cluster.py): two bytewax processes give the same monitor
events as one (as sets, and in order per conversation, each conversation on one worker); the key routing we
predict is bytewax's; the cluster options resolve to one cluster or are refused."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import psutil
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflows.cluster import (
    ClusterConfigError,
    ClusterShape,
    free_ports,
    resolve_shape,
    shard_keys,
    worker_of,
)
from dataflows.flow import FlowSinks
from operators.gaps import GAP_KEY
from tests.dataflows.cluster_day import day_flow, stamped_day
from tests.support import REPO
from worktool.settings import Settings

# ----------------------------------------------------------------------------- same events, 1 vs 2 processes


def by_conversation(lines: list[bytes]) -> dict[str | None, list[bytes]]:
    out: dict[str | None, list[bytes]] = defaultdict(list)
    for line in lines:
        out[orjson.loads(line)["session_id"]].append(line)
    return out


def test_two_processes_give_the_same_events_as_one(tmp_path: Path) -> None:
    """The sample day, stamped by a gateway with one record missing: every rule's events, and the loss
    detector's (one key, on one worker, fed by stamps from both processes)."""
    archive = stamped_day(tmp_path / "day.jsonl", missing=60)
    reference: list[Any] = []
    run_main(day_flow(FlowSinks(events=[TestingSink(reference)]), archive))
    one = [e.to_json() for e in reference]
    assert any(e.event == "pipeline_gap" for e in reference)

    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bytewax.run",
                f"tests.dataflows.cluster_day:flow({str(archive)!r}, {str(tmp_path)!r})",
                "-w",
                "1",
                "-i",
                str(i),
                "-a",
                addresses,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out.decode(errors="replace")[-3000:]
    per_worker = {
        w: (tmp_path / f"events-{w}.jsonl").read_bytes().splitlines()
        for w in range(2)
        if (tmp_path / f"events-{w}.jsonl").exists()
    }
    assert set(per_worker) == {0, 1}, "both processes hold conversations"
    two = [line for lines in per_worker.values() for line in lines]
    assert len(one) > 300
    assert sorted(two) == sorted(one)  # the same events (as a multiset)
    # Each conversation on one worker, its events in the same order as with one process.
    conversations = [by_conversation(lines) for lines in per_worker.values()]
    assert not set(conversations[0]) & set(conversations[1]) - {None}
    merged = {**conversations[0], **conversations[1]}
    reference_order = by_conversation(one)
    for session_id, events in reference_order.items():
        if session_id is not None:
            assert merged[session_id] == events, session_id
    assert len(reference_order) > 5


# ----------------------------------------------------------------------------- routing


class _Seen(StatelessSinkPartition[Any]):
    def __init__(self, worker: int, seen: dict[str, int]) -> None:
        self.worker, self.seen = worker, seen

    def write_batch(self, items: list[Any]) -> None:
        for key, _ in items:
            self.seen[key] = self.worker


class _SeenSink(DynamicSink[Any]):
    def __init__(self, seen: dict[str, int]) -> None:
        self.seen = seen

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Seen:
        return _Seen(worker_index, self.seen)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_worker_of_predicts_where_bytewax_keeps_a_key(workers: int) -> None:
    keys = [*shard_keys(16), GAP_KEY, "a-longer-key-than-eight-bytes"]
    seen: dict[str, int] = {}
    flow = Dataflow("routing")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda k: k)
    op.output("out", op.stateful_map("state", keyed, lambda s, v: (s, v)), _SeenSink(seen))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert seen == {k: worker_of(k, workers) for k in keys}


def test_the_processes_that_hold_shards_are_the_ones_expected_to_beat() -> None:
    shape = ClusterShape(workers=2, processes=2)
    owners = shape.shard_owners(16)
    assert sorted(k for keys in owners.values() for k in keys) == sorted(shard_keys(16))
    assert shape.beating_processes(16) == sorted({w // 2 for w, keys in owners.items() if keys})
    assert ClusterShape(workers=1, processes=16).beating_processes(16) != list(range(16))  # hashing is uneven


# ----------------------------------------------------------------------------- options


def test_cluster_options_resolve_and_conflicts_are_refused() -> None:
    settings = Settings()
    assert resolve_shape(settings, environ={}) == ClusterShape()
    local = resolve_shape(settings, workers=2, processes=3, environ={})
    assert (local.total_workers, local.is_local_launcher) == (6, True)
    member = resolve_shape(settings, process_id=1, addresses="a:1;b", environ={})
    assert member == ClusterShape(workers=1, processes=2, process_id=1, addresses=("a:1", "b:2101"))
    assert member.bytewax_args() == ["-w", "1", "-i", "1", "-a", "a:1;b:2101"]
    # bytewax's own variables, under ours
    env = {"BYTEWAX_PROCESS_ID": "0", "BYTEWAX_ADDRESSES": "x:1;y:1", "BYTEWAX_WORKERS_PER_PROCESS": "2"}
    assert resolve_shape(settings, environ=env) == ClusterShape(2, 2, 0, ("x:1", "y:1"))
    ours = Settings(WORKTOOL_DATAFLOW_WORKERS=3)  # type: ignore[call-arg]
    assert resolve_shape(ours, environ=env).workers == 3
    for bad in (
        {"processes": 3, "process_id": 0, "addresses": "a;b"},  # 3 processes, 2 addresses
        {"addresses": "a;b"},  # which one is this?
        {"processes": 2, "process_id": 1},  # where are the others?
        {"process_id": 2, "addresses": "a;b"},
    ):
        with pytest.raises(ClusterConfigError):
            resolve_shape(settings, environ={}, **bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the local launcher

LAUNCHER = (
    "import sys; from dataflows.cluster import ClusterShape, run_local_cluster; "
    "raise SystemExit(run_local_cluster(ClusterShape(processes=2), [sys.executable, '-c', "
    "'import time; time.sleep(120)'], metrics_port=9000))"
)


def launched() -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER], cwd=REPO, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    # Both children started and exec'd: between fork and exec a child still shows the launcher's own
    # command line and environment (seen under load as a flaky read of the process id).
    while not (
        len(members := psutil.Process(launcher.pid).children()) >= 2 and all(_execd(m) for m in members)
    ):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    return launcher, members


def _execd(member: psutil.Process) -> bool:
    try:
        return "time.sleep(120)" in " ".join(member.cmdline())
    except psutil.Error:
        return False


def test_the_launcher_stops_every_process_when_one_dies() -> None:
    launcher, members = launched()
    envs = [m.environ() for m in members]
    assert [e["WORKTOOL_DATAFLOW_PROCESS_ID"] for e in envs] == ["0", "1"]
    assert [e["WORKTOOL_DATAFLOW_METRICS_PORT"] for e in envs] == ["9000", "9001"]  # base port + process id
    assert envs[0]["WORKTOOL_DATAFLOW_ADDRESSES"] == envs[1]["WORKTOOL_DATAFLOW_ADDRESSES"]
    assert members[1].cmdline()[-6:-2] == ["-w", "1", "-i", "1"]
    members[0].kill()
    assert launcher.wait(10) == 1
    assert not members[1].is_running() or members[1].status() == psutil.STATUS_ZOMBIE
    assert b"dataflow process 0" in launcher.stderr.read()  # type: ignore[union-attr]


def test_no_process_outlives_a_killed_launcher() -> None:
    launcher, members = launched()
    launcher.kill()
    launcher.wait(10)
    _, alive = psutil.wait_procs(members, timeout=10)
    assert alive == []


# ----------------------------------------------------------------------------- start-up checks


@pytest.mark.integration
def test_start_up_warns_of_idle_workers_and_sizes_recovery_for_the_cluster(
    kafka_bootstrap: str, unique_topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    from bytewax.recovery import init_db_dir

    from dataflows import runner

    topics = unique_topics(raw_partitions=2)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, data_dir=tmp_path / "new", **topics)
    monkeypatch.setattr(runner, "get_settings", lambda: settings)
    caplog.set_level(logging.INFO)
    runner.check_cluster(ClusterShape(workers=2, processes=2))
    assert f"topic {topics['topic_raw']} has 2 partitions for 4 workers" in caplog.text
    caplog.clear()
    runner.check_cluster(ClusterShape(workers=1, processes=2))
    assert "partitions for" not in caplog.text

    # A new recovery directory: one partition per worker (bytewax commits every partition at every epoch,
    # so extra ones cost an idle flow fsyncs), or WORKTOOL_RECOVERY_PARTITIONS when it is set.
    assert runner.recovery_partition_count(Path(runner.ensure_recovery_dir(4))) == 4
    one = Settings(data_dir=tmp_path / "one")
    monkeypatch.setattr(runner, "get_settings", lambda: one)
    assert runner.recovery_partition_count(Path(runner.ensure_recovery_dir())) == 1
    sized = Settings(data_dir=tmp_path / "sized", recovery_partitions=16)
    monkeypatch.setattr(runner, "get_settings", lambda: sized)
    assert runner.recovery_partition_count(Path(runner.ensure_recovery_dir(2))) == 16
    # One made before (4 partitions) keeps them, and says so when the cluster has more workers.
    old = Settings(data_dir=tmp_path / "old")
    old.recovery_dir.mkdir(parents=True)
    init_db_dir(old.recovery_dir, 4)
    monkeypatch.setattr(runner, "get_settings", lambda: old)
    assert runner.recovery_partition_count(Path(runner.ensure_recovery_dir(8))) == 4
    assert "has 4 partitions for 8 workers" in caplog.text
