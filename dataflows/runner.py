"""Start the live dataflow as its own process: `python -m bytewax.run` with recovery, so a restart
resumes from the last snapshot (state and Kafka offsets together)."""

from __future__ import annotations

import os
import subprocess
import sys

from bytewax.recovery import init_db_dir

from worktool.settings import get_settings

# Fixed forever for a recovery directory; at least the most workers we will ever run.
RECOVERY_PARTITIONS = 4


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
        "dataflows.main:live_flow()",
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
