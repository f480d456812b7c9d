"""`worktool up` end to end: the real processes on the embedded default, one webhook through to
PostgreSQL, and a SIGTERM that leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from infra.embedded import free_port
from tests.support import GROUP_MESSAGE, answers, spawn_up, up_env


def _wait(check, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worktool up exited with {proc.returncode} while waiting for {what}:\n{_tail(log)}")
        if result := check():
            return result
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{_tail(log)}")


def _tail(path: Path, n: int = 3000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-n:]


def _stored_text(database_url: str, text: str) -> tuple | None:
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            return conn.execute(
                "SELECT sender_name, session_id FROM session_messages WHERE content = %s", (text,)
            ).fetchone()
    except psycopg.Error:  # table not there yet, server busy
        return None


@contextlib.contextmanager
def _worktool_up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path, Path]]:
    """`worktool up` on a fresh data dir and a free port, healthy; yields (process, base URL, data dir,
    log). Whatever is left of its process tree is killed at the end."""
    port = free_port()
    data_dir = tmp_path / "data"
    env = up_env(port, data_dir)
    log = tmp_path / "up.log"
    up = spawn_up(env, log)
    base = f"http://127.0.0.1:{port}"
    tree = [psutil.Process(up.pid)]
    try:
        _wait(lambda: answers(f"{base}/healthz"), 120, "/healthz 200", up, log)
        tree += psutil.Process(up.pid).children(recursive=True)
        yield up, base, data_dir, log
    finally:
        if up.poll() is None:
            up.kill()
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def _process_tree(pid: int) -> list[psutil.Process]:
    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


@pytest.mark.integration
def test_up_serves_a_webhook_into_postgres_and_stops_cleanly(tmp_path: Path) -> None:
    with _worktool_up(tmp_path) as (up, base, data_dir, log):
        info = json.loads((data_dir / "stack.json").read_text())
        assert info["http_url"] == base
        assert set(info["embedded"]) == {"kafka", "postgres", "redis"}

        text = f"我的视频号发不了作品，需要扫码认证吗 {uuid.uuid4().hex[:6]}"
        body = {**GROUP_MESSAGE, "spoken": text, "rawSpoken": f"@运营助理小A {text}"}
        response = httpx.post(f"{base}/worktool/callback/message", params={"robotId": "wt_day_01"}, json=body)
        assert response.status_code == 200
        assert response.json()["code"] == 0

        row = _wait(
            lambda: _stored_text(info["database_url"], text), 60, "the row in session_messages", up, log
        )
        assert row == ("用户甲-138****0000", "group:视频号运营A群")

        tree = _process_tree(up.pid)
        assert len(tree) >= 6  # up, gateway, dataflow, broker, postgres (+ its workers), redis
        started = time.monotonic()
        up.send_signal(signal.SIGTERM)
        assert up.wait(20) == 0, _tail(log)
        _, alive = psutil.wait_procs(tree, timeout=max(0.1, 20 - (time.monotonic() - started)))
        assert not alive, f"left behind: {alive}"
        assert not (data_dir / "stack.json").exists()


# A child that dies is restarted, never a reason to stop: tests/commands/test_up_supervision.py.


def test_a_fresh_embedded_broker_drops_the_dataflow_recovery_state(tmp_path: Path) -> None:
    from commands.up import Stack
    from worktool.settings import Settings

    stack = Stack(Settings(data_dir=tmp_path / "data"))
    snapshot = stack.settings.recovery_dir / "part-0.sqlite3"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"offsets of a broker that no longer exists")
    stack._forget_recovery_state()
    assert not stack.settings.recovery_dir.exists()
    stack._forget_recovery_state()  # nothing to remove: no error
