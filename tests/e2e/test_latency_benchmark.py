"""The reaction-time benchmark (benchmarks/bench_reply_latency.py) still runs: a tiny run on its own
embedded stack produces every figure and every message arrives. A smoke run, not a timed assertion:
the figures themselves belong in benchmarks/README.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support import REPO

pytestmark = pytest.mark.integration

MESSAGES = 8
STAGES = (
    "webhook_to_read_ms",
    "stamp_to_raw_produce_ms",
    "raw_produce_to_event_produce_ms",
    "event_produce_to_read_ms",
)


def test_the_latency_benchmark_runs_and_every_message_arrives(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/bench_reply_latency.py", "--messages", str(MESSAGES), "--warmup", "2",
         "--idle-s", "1", "--json", str(out), "--logs", str(tmp_path / "stack")],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    figures = orjson.loads(out.read_bytes())
    assert figures["arrived"] == {
        "raw": MESSAGES,
        "message_classified": MESSAGES,
        "reply_scheduled": MESSAGES,
    }
    for event in ("message_classified", "reply_scheduled"):
        for stage in STAGES:
            q = figures[event][stage]
            assert q["n"] == MESSAGES, (event, stage)
            assert q["p50"] <= q["p95"] <= q["p99"] <= q["max"], (event, stage, q)
        assert figures[event]["webhook_to_read_ms"]["p50"] > 0
    assert figures["idle_cpu_percent"] >= 0
    assert "webhook sent -> event read" in run.stdout
