"""The dataflow benchmark (benchmarks/bench_dataflow.py) still runs, replay and live wiring: a tiny run
(--smoke) on its own embedded broker and database. A smoke run, not a timed assertion: the figures
belong in benchmarks/README.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support import REPO

pytestmark = pytest.mark.integration


def test_the_dataflow_benchmark_runs_replay_and_live(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/bench_dataflow.py", "--smoke", "--kafka", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    figures = orjson.loads(out.read_bytes())
    replay, live = figures["replay"], figures["live"]
    assert replay["records_per_s"] > 0 and live["records_per_s"] > 0
    classified = live["kinds"]["message_classified"]
    # Every distinct message went through the live path into PostgreSQL, as in the replay.
    assert classified == replay["kinds"]["message_classified"] > 100
    assert live["rows"] == classified
    assert "live / replay:" in run.stdout
