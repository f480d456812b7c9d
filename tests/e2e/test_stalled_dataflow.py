"""Under `worktool up`, a dataflow that stops making progress is restarted, an idle one is not.

The dataflow is frozen with SIGSTOP: from outside it looks exactly like a step stuck in C code holding
the GIL (no thread of it runs, its heartbeat stops). The supervisor notices the stale heartbeat, kills
it and restarts it; webhooks acknowledged meanwhile and after reach PostgreSQL exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.embedded import free_port
from tests.commands.test_up_supervision import ROBOT, TOKEN, Poster, assert_stored_exactly_once
from tests.support import RunningStack, chaos_scale, running_up, up_env

REPO = Path(__file__).resolve().parents[2]
STALL_S = 4.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[RunningStack]:
    env = up_env(
        free_port(),
        tmp_path / "data",
        WORKTOOL_WEBHOOK_TOKENS=json.dumps({ROBOT: TOKEN}),
        WORKTOOL_DATAFLOW_STALL_S=str(STALL_S),
    )
    with running_up(env, tmp_path / "up.log", clean_exit=False) as running:
        yield running


def test_a_stalled_dataflow_is_restarted_and_an_idle_one_is_not(stack: RunningStack) -> None:
    # Idle for several stall periods: its ticks keep the heartbeat fresh, nothing is restarted.
    time.sleep(3 * STALL_S)
    assert stack.info["processes"]["dataflow"]["restarts"] == 0, stack.tail()
    assert "dataflow stalled" not in stack.tail(50000)

    for round_ in range(chaos_scale()):
        with Poster(stack.base, f"stall{round_}-{uuid.uuid4().hex[:6]}") as poster:
            time.sleep(1.0)
            frozen = stack.pid("dataflow")
            os.kill(frozen, signal.SIGSTOP)
            deadline = time.monotonic() + STALL_S + 90
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    state = stack.info["processes"]["dataflow"]
                    if state["state"] == "running" and state["pid"] not in (None, frozen):
                        break
                time.sleep(0.2)
            else:
                pytest.fail(f"stalled dataflow not restarted:\n{stack.tail()}")
            time.sleep(2.0)
        assert poster.failures == []
        assert_stored_exactly_once(stack, poster)
    log = stack.tail(100000)
    assert "dataflow stalled: heartbeat" in log, log
    assert "killing it" in log
