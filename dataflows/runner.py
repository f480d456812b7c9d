"""Start the live dataflow as its own process: `python -m bytewax.run` with recovery, so a restart
resumes from the last snapshot (state and Kafka offsets together).

With WORKTOOL_DATAFLOW_METRICS_PORT set, the dataflow process serves Prometheus metrics (its counters and
bytewax's `bytewax_kafka_consumer_lag`, both in the default registry) on WORKTOOL_DATAFLOW_METRICS_HOST
(default loopback), behind WORKTOOL_METRICS_TOKEN when set. Bytewax's own dataflow API would serve them
too, but always on 0.0.0.0 and without a token.

A cluster (`--processes`, `--process-id`, `--addresses`) is described in dataflows/cluster.py."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.recovery import init_db_dir

from dataflows.cluster import ClusterShape, run_local_cluster
from dataflows.collector import tune_collector
from worktool.settings import Settings, get_settings

log = logging.getLogger(__name__)


def live_flow_with_metrics() -> Dataflow:
    """The live flow, after starting the metrics server in this (the bytewax) process."""
    settings = get_settings()
    tune_collector(settings.gc_threshold)
    if settings.dataflow_metrics_port is not None:
        from infra.metrics_http import serve_metrics

        serve_metrics(settings.dataflow_metrics_host, settings.dataflow_metrics_port, settings.metrics_token)
        log.info(
            "dataflow metrics on http://%s:%d/metrics",
            settings.dataflow_metrics_host,
            settings.dataflow_metrics_port,
        )
    from dataflows.main import live_flow

    return live_flow()


def recovery_partition_count(path: Path) -> int:
    return len(list(path.glob("part-*.sqlite3")))


def ensure_recovery_dir(total_workers: int = 1) -> str:
    """The recovery directory, created with WORKTOOL_RECOVERY_PARTITIONS partitions (unset: one per worker
    of the cluster, `total_workers`) when it has none. bytewax commits every partition at every epoch (each
    2 s, idle or not: three fsyncs a partition), so a one-worker dataflow with 16 partitions spent most of
    its idle main thread there (benchmarks/README.md, "Issue 14: idle, again"). The
    processes of a cluster share it: a lock keeps two of them from creating it at the same time. An existing
    directory keeps its partition count (bytewax fixes it forever); fewer partitions than workers still
    works, the snapshots of several workers then share a partition (docs/operations.md, how to grow)."""
    settings = get_settings()
    path = settings.recovery_dir
    path.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".recovery.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        count = recovery_partition_count(path)
        if count == 0:
            count = settings.recovery_partitions or max(1, total_workers)
            init_db_dir(path, count)
            log.info("recovery directory %s created with %d partitions", path, count)
    if count < total_workers:
        log.warning(
            "recovery directory %s has %d partitions for %d workers: it works, but several workers share "
            "a partition; a new directory takes WORKTOOL_RECOVERY_PARTITIONS (docs/operations.md)",
            path, count, total_workers,
        )  # fmt: skip
    return str(path)


def check_cluster(shape: ClusterShape) -> None:
    """Say loudly what would leave workers idle: fewer raw-topic partitions than workers (a Kafka partition
    is read by one worker), or workers that hold no shard of the stateful steps."""
    settings = get_settings()
    idle = [w for w, keys in shape.shard_owners(settings.shards).items() if not keys]
    if idle:
        log.warning(
            "%d of %d workers hold no shard of the stateful steps (WORKTOOL_SHARDS=%d): they read and parse "
            "input but keep no session state; more shards spread the state (a new recovery directory)",
            len(idle), shape.total_workers, settings.shards,
        )  # fmt: skip
    partitions = raw_partition_count(settings)
    if partitions is not None and partitions < shape.total_workers:
        log.error(
            "topic %s has %d partitions for %d workers: %d workers will read no input; create it with at "
            "least WORKTOOL_RAW_PARTITIONS=%d partitions (docs/operations.md, 'A dataflow cluster')",
            settings.topic_raw, partitions, shape.total_workers, shape.total_workers - partitions,
            shape.total_workers,
        )  # fmt: skip


def raw_partition_count(settings: Settings) -> int | None:
    """The partition count of the raw topic, or None when the broker does not tell within a few seconds."""
    if not settings.kafka_bootstrap_servers:
        return None
    from infra import kafka_clients

    try:
        admin = kafka_clients.admin(settings.kafka_bootstrap_servers)
        # All topics: a metadata request naming a missing topic may create it on a broker that auto-creates.
        topic = admin.list_topics(timeout=5).topics.get(settings.topic_raw)
    except Exception as e:  # the dataflow itself reports an unreachable broker
        log.info("raw topic partitions not checked: %s", e)
        return None
    return len(topic.partitions) if topic is not None and topic.error is None and topic.partitions else None


def bytewax_command(shape: ClusterShape | None = None) -> list[str]:
    """The bytewax command of this process, without its cluster arguments (ClusterShape.bytewax_args)."""
    settings = get_settings()
    shape = shape or ClusterShape()
    return [
        sys.executable,
        "-m",
        "bytewax.run",
        "dataflows.runner:live_flow_with_metrics()",
        "-r",
        ensure_recovery_dir(shape.total_workers),
        "-s",
        str(settings.snapshot_interval_s),
        "-b",
        "30",
    ]


def run_live(
    shape: ClusterShape | None = None, *, workers: int | None = None, log_dir: Path | None = None
) -> int:
    """Run this process of the dataflow (or, for `--processes N` without a process id, all N of them on
    this machine: dataflows/cluster.py)."""
    shape = shape or ClusterShape(workers=workers or 1)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_cluster(shape)
    cmd = bytewax_command(shape)
    if shape.is_local_launcher:
        return run_local_cluster(
            shape, cmd, log_dir=log_dir, metrics_port=get_settings().dataflow_metrics_port
        )
    os.environ.update(shape.env())  # the flow reads its place in the cluster from the settings
    cmd += shape.bytewax_args()
    # Replace this process so signals reach bytewax directly and no wrapper is left behind.
    os.execv(cmd[0], cmd)
    return subprocess.call(cmd)  # pragma: no cover (execv does not return)
