"""The webhook benchmark (benchmarks/bench_webhook.py) still runs: its --smoke mode measures the bare
endpoint and the gateway on its own embedded broker for a second each and exits non-zero on an error
answer or an acknowledged record missing from the raw topic. A smoke run, not a timed assertion: the
figures belong in benchmarks/README.md."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.integration


def test_the_webhook_benchmark_runs_and_every_answer_has_its_record() -> None:
    run = subprocess.run(
        [sys.executable, "benchmarks/bench_webhook.py", "--smoke"],
        cwd=REPO, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "bare ASGI endpoint" in run.stdout and "% of the bare endpoint" in run.stdout
    assert "raw records" in run.stdout and ": True" in run.stdout
