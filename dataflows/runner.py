"""Start the live dataflow as its own process: `python -m bytewax.run` with recovery, so a restart
resumes from the last snapshot (state and Kafka offsets together).

With WORKTOOL_DATAFLOW_METRICS_PORT set, the dataflow process serves Prometheus metrics (its counters and
bytewax's `bytewax_kafka_consumer_lag`, both in the default registry) on WORKTOOL_DATAFLOW_METRICS_HOST
(default loopback), behind WORKTOOL_METRICS_TOKEN when set. Bytewax's own dataflow API would serve them
too, but always on 0.0.0.0 and without a token."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from bytewax.dataflow import Dataflow
from bytewax.recovery import init_db_dir

from worktool.settings import get_settings

log = logging.getLogger(__name__)

# Fixed forever for a recovery directory; at least the most workers we will ever run.
RECOVERY_PARTITIONS = 4


def live_flow_with_metrics() -> Dataflow:
    """The live flow, after starting the metrics server in this (the bytewax) process."""
    settings = get_settings()
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


def ensure_recovery_dir() -> str:
    settings = get_settings()
    path = settings.recovery_dir
    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, RECOVERY_PARTITIONS)
    return str(path)


def bytewax_command(workers: int = 1) -> list[str]:
    settings = get_settings()
    return [
        sys.executable,
        "-m",
        "bytewax.run",
        "dataflows.runner:live_flow_with_metrics()",
        "-w",
        str(workers),
        "-r",
        ensure_recovery_dir(),
        "-s",
        str(settings.snapshot_interval_s),
        "-b",
        "30",
    ]


def run_live(workers: int = 1) -> int:
    cmd = bytewax_command(workers)
    # Replace this process so signals reach bytewax directly and no wrapper is left behind.
    os.execv(cmd[0], cmd)
    return subprocess.call(cmd)  # pragma: no cover (execv does not return)
