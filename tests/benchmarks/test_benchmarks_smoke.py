"""Every benchmark still runs: a tiny `--smoke` run of each benchmarks/bench_*.py prints its figure line.

Smoke runs, not timed tests: nothing here asserts a speed (the figures belong in benchmarks/README.md).
A benchmark that lacks a smoke entry here fails `test_every_benchmark_has_a_smoke_run`, so a new one
cannot be forgotten. The benchmarks that need servers and can use running ones are pointed at the test
session's broker, database and Redis; the others start their own (as their users run them).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import REPO
from worktool.settings import Settings

BENCHMARKS = REPO / "benchmarks"

# name -> (the figure line a smoke run prints, a regular expression; needs the embedded servers)
SMOKE: dict[str, tuple[str, bool]] = {
    "bench_rules.py": (r"rules \+ model +best of \d+: [\d,]+ messages/s", False),
    "bench_llm.py": (r"\d+ messages in [\d.]+ s \(\d+/s\)", False),
    "bench_broker_fetch.py": (r"\d+ records, produce -> consume: p50 [\d.]+ ms", True),
    "bench_dispatcher.py": (r"^\s+2\s+[\d,]+\s+\d+", True),
    "bench_webhook.py": (r"gateway linger.ms=2 workers=1\s+\d+ req/s", True),
    "bench_reply_latency.py": (r"webhook sent -> event read\s+p50\s+[\d.]+", True),
    "bench_idle.py": (r"idle dataflow: [\d.]+ % of a core", True),
    "bench_open_sessions.py": (r"[\d,]+ records/s", False),
    "bench_cluster.py": (r"[\d,]+ records/s", True),
    "bench_events.py": (r"[\d.]+ µs  decode raw record", False),
    "bench_pg_projection.py": (r"first write [\d.]+ s \([\d,]+ events/s\)", True),
    "bench_kb.py": (r"rjieba +weights .*: top-3 hit rate [\d.]+", True),
    "bench_replies.py": (r"llm, instant: [\d,]+ records/s", False),
    "bench_recorded_answers.py": (r"get \+ apply_answer for [\d,]+ messages +[\d.]+ s", False),
}
# Benchmarks whose smoke run is a test of their own area, with stronger assertions on its figures.
SMOKE_ELSEWHERE = {
    "bench_dataflow.py": REPO / "tests" / "e2e" / "test_dataflow_benchmark.py",
    "bench_replay.py": REPO / "tests" / "dataflows" / "test_replay_workers.py",
}
TIMEOUT_S = 240


def run_bench(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = BENCHMARKS / name
    if not path.exists() or "--smoke" not in path.read_text(encoding="utf-8"):
        pytest.skip(f"{name} has no --smoke mode yet")
    run = subprocess.run(
        [sys.executable, str(path), "--smoke", *args],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    figure = SMOKE[name][0]
    assert re.search(figure, run.stdout, re.MULTILINE), (figure, run.stdout[-2000:])
    return run


def test_every_benchmark_has_a_smoke_run() -> None:
    benches = {p.name for p in BENCHMARKS.glob("bench_*.py")}
    assert benches - set(SMOKE) - set(SMOKE_ELSEWHERE) == set(), "add a --smoke mode and an entry in SMOKE"
    for name, test in SMOKE_ELSEWHERE.items():
        text = test.read_text(encoding="utf-8")
        assert name in text and '"--smoke"' in text, (name, test)


@pytest.mark.parametrize(
    "name", [n for n, (_, servers) in SMOKE.items() if not servers and n not in ("bench_reply_latency.py",)]
)
def test_a_benchmark_without_servers_runs(name: str) -> None:
    run_bench(name)


@pytest.mark.integration
@pytest.mark.parametrize(
    "name",
    [
        "bench_broker_fetch.py",
        "bench_dispatcher.py",
        "bench_webhook.py",
        "bench_cluster.py",
        "bench_pg_projection.py",
        "bench_kb.py",
    ],
)
def test_a_benchmark_with_its_own_servers_runs(name: str) -> None:
    run_bench(name)


@pytest.mark.integration
def test_the_idle_benchmark_runs_on_the_session_servers(
    settings_factory: Callable[..., Settings], unique_topics: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    settings = settings_factory(**unique_topics())
    own_redis = settings.redis_url.rsplit("/", 1)[0] + "/11"  # the heartbeat key is the stack's own
    fields = ["topic_raw", "topic_control", "topic_commands", "topic_monitor", "topic_dlq"]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": own_redis,
        **{Settings.model_fields[f].alias: getattr(settings, f) for f in fields},
    }
    out = tmp_path / "figures.json"
    run = run_bench(
        "bench_idle.py", "--json", str(out), "--logs", str(tmp_path / "stack"),
        *(arg for k, v in env.items() for arg in ("--env", f"{k}={v}")),
    )  # fmt: skip
    figures = orjson.loads(out.read_bytes())
    assert {"dataflow", "gateway", "console", "dispatcher"} <= set(figures["cpu_percent"])
    assert "kafka" not in figures["cpu_percent"]  # the session's broker, not an embedded one
    assert "load average before" in run.stdout


# The reaction-time benchmark on its own embedded stack (it measures the servers too): every message
# arrives and every figure is there (folded in from tests/e2e/test_latency_benchmark.py).
MESSAGES = 8
STAGES = (
    "webhook_to_read_ms",
    "stamp_to_raw_produce_ms",
    "raw_produce_to_event_produce_ms",
    "event_produce_to_read_ms",
)


@pytest.mark.integration
def test_the_latency_benchmark_runs_and_every_message_arrives(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run_bench("bench_reply_latency.py", "--json", str(out), "--logs", str(tmp_path / "stack"))
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
