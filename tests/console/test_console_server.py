"""Serving the console API: loopback only without a token (refused before anything is bound), the live
server through `worktool console` with a token that never reaches the logs."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import console.server
from console.server import ConsoleConfigError, check_serving, serve
from infra.embedded import free_port
from tests.console.alert_rows import insert_alert
from tests.support import REPO, answers, consume_all, env_for, spawn, stop, wait_until
from worktool.settings import Settings

TOKEN = "live-console-token-52be01"
SERVICES = {
    "database_url": "postgresql://worktool@127.0.0.1:5432/worktool",
    "kafka_bootstrap_servers": "127.0.0.1:9092",
}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "console.example"])
def test_without_a_token_a_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ConsoleConfigError, match="WORKTOOL_API_TOKEN"):
        check_serving(Settings(api_host=host, api_token=None, **SERVICES))
    with pytest.raises(ConsoleConfigError):
        check_serving(Settings(api_host=host, api_token="   ", **SERVICES))  # blank is no token


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_without_a_token_loopback_is_served(host: str) -> None:
    check_serving(Settings(api_host=host, api_token=None, **SERVICES))


def test_with_a_token_any_host_is_served() -> None:
    check_serving(Settings(api_host="0.0.0.0", api_token=TOKEN, **SERVICES))


def test_the_database_and_broker_are_required() -> None:
    with pytest.raises(ConsoleConfigError, match="DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS"):
        check_serving(Settings(database_url=None, kafka_bootstrap_servers=None))


def test_the_token_stays_out_of_the_settings_repr() -> None:
    assert TOKEN not in repr(Settings(api_token=TOKEN))


def test_serving_without_a_token_says_it_is_unauthenticated(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(console.server.uvicorn, "run", lambda app, **kw: served.update(kw))
    with caplog.at_level(logging.INFO, logger="console.server"):
        serve(Settings(api_token=None, api_port=18081, **SERVICES))

    assert served["host"] == "127.0.0.1" and served["port"] == 18081
    assert "console API is unauthenticated" in caplog.text and "loopback only" in caplog.text


def test_worktool_console_refuses_a_public_host_without_a_token(tmp_path: Path) -> None:
    settings = Settings(api_token=None, **SERVICES)
    proc = subprocess.run(
        [sys.executable, "-m", "commands.cli", "console", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env_for(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to serve the console API on 0.0.0.0 without a token" in " ".join(proc.stderr.split())


@pytest.mark.integration
def test_worktool_console_serves_the_api_with_a_token(
    kafka_bootstrap: str, migrated_database_url: str, unique_topics: Callable[..., Any], tmp_path: Path
) -> None:
    port = free_port()
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=migrated_database_url,
        api_token=TOKEN,
        api_port=port,
        **unique_topics(),
    )
    alert_id = insert_alert(migrated_database_url, level=3, status="escalated")
    log = tmp_path / "console.log"
    proc = spawn([sys.executable, "-m", "commands.cli", "console"], settings, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), timeout=60, what="the console API")
        path = f"{base}/api/alerts/{alert_id}/escalate"
        body = {"reason": "用户多次催促", "actor": "主管"}
        refused = httpx.post(path, json=body, timeout=10)
        accepted = httpx.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        docs = httpx.get(f"{base}/docs", timeout=10)
    finally:
        stop(proc)

    assert refused.status_code == 401
    assert accepted.status_code == 202, accepted.text
    assert docs.status_code == 200
    [record] = consume_all(kafka_bootstrap, settings.topic_control, idle_s=0.5)
    assert record["value"]["request_id"] == accepted.json()["request_id"]
    assert record["value"]["action"] == "escalate_alert"
    text = log.read_text()
    assert f"escalate_alert of alert {alert_id} by 主管 accepted" in text
    assert TOKEN not in text
