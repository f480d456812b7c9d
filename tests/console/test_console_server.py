"""Serving the console API: loopback only without WORKTOOL_JWT_SECRET (refused before anything is
bound), the live server through `worktool console` with secrets that never reach the logs."""

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
JWT_SECRET = "live-console-jwt-secret-3f9a7c1e5b2d4a6c8e0f"
SERVICES = {
    "database_url": "postgresql://worktool@127.0.0.1:5432/worktool",
    "kafka_bootstrap_servers": "127.0.0.1:9092",
}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "console.example"])
def test_without_a_jwt_secret_a_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ConsoleConfigError, match="WORKTOOL_JWT_SECRET"):
        check_serving(Settings(api_host=host, jwt_secret=None, **SERVICES))
    with pytest.raises(ConsoleConfigError):
        check_serving(Settings(api_host=host, jwt_secret="   ", **SERVICES))  # blank is none
    with pytest.raises(ConsoleConfigError):  # the service token does not replace it
        check_serving(Settings(api_host=host, api_token=TOKEN, **SERVICES))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_without_a_jwt_secret_loopback_is_served(host: str) -> None:
    check_serving(Settings(api_host=host, jwt_secret=None, **SERVICES))


def test_with_a_jwt_secret_any_host_is_served() -> None:
    check_serving(Settings(api_host="0.0.0.0", jwt_secret=JWT_SECRET, **SERVICES))


def test_the_database_and_broker_are_required() -> None:
    with pytest.raises(ConsoleConfigError, match="DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS"):
        check_serving(Settings(database_url=None, kafka_bootstrap_servers=None))


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = Settings(api_token=TOKEN, jwt_secret=JWT_SECRET, secrets_key="c2VjcmV0cy1rZXktZm9yLXJlcHI=")
    assert TOKEN not in repr(settings) and JWT_SECRET not in repr(settings)
    assert "c2VjcmV0cy1rZXktZm9yLXJlcHI=" not in repr(settings)


def test_a_short_jwt_secret_is_refused_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console.server.uvicorn, "run", lambda app, **kw: pytest.fail("served"))
    with pytest.raises(ConsoleConfigError, match="at least 32 bytes"):
        serve(Settings(jwt_secret="too-short", **SERVICES))


def test_serving_on_loopback_generates_a_private_jwt_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(console.server.uvicorn, "run", lambda app, **kw: served.update(kw))
    with caplog.at_level(logging.INFO, logger="console.server"):
        serve(Settings(api_token=TOKEN, api_port=18081, data_dir=tmp_path, **SERVICES))

    assert served["host"] == "127.0.0.1" and served["port"] == 18081
    secret = tmp_path / "console" / "jwt_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert len(secret.read_text().strip()) >= 32
    assert "service account (role supervisor)" in caplog.text and TOKEN not in caplog.text


def test_worktool_console_refuses_a_public_host_without_a_jwt_secret(tmp_path: Path) -> None:
    settings = Settings(api_token=TOKEN, **SERVICES)
    proc = subprocess.run(
        [sys.executable, "-m", "commands.cli", "console", "--host", "0.0.0.0", "--port", str(free_port())],
        env=env_for(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to serve the console API on 0.0.0.0 without WORKTOOL_JWT_SECRET" in " ".join(
        proc.stderr.split()
    )


@pytest.mark.integration
def test_worktool_console_serves_the_api_to_the_service_token_and_to_an_account(
    kafka_bootstrap: str, new_database: Callable[..., str], unique_topics: Callable[..., Any], tmp_path: Path
) -> None:
    """`worktool users add` then `worktool console`: the account logs in and acts, the service token
    still works, and neither secret nor the password reaches the logs."""
    port = free_port()
    database_url = new_database(migrated=True)
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        api_token=TOKEN,
        api_port=port,
        data_dir=tmp_path / "data",
        **unique_topics(),
    )
    password = "值班主管-口令-91c2"
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands.cli",
            "users",
            "add",
            "zhuguan",
            "--role",
            "supervisor",
            "--password-stdin",
        ],
        env=env_for(settings),
        cwd=REPO,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    escalated = insert_alert(database_url, level=3, status="escalated")
    cancelled = insert_alert(database_url, level=1)
    log = tmp_path / "console.log"
    proc = spawn([sys.executable, "-m", "commands.cli", "console"], settings, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), timeout=60, what="the console API")
        path = f"{base}/api/alerts/{escalated}/escalate"
        body = {"reason": "用户多次催促", "actor": "主管"}
        refused = httpx.post(path, json=body, timeout=10)
        accepted = httpx.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        login = httpx.post(
            f"{base}/api/auth/login", json={"username": "zhuguan", "password": password}, timeout=30
        )
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        me = httpx.get(f"{base}/api/auth/me", headers=bearer, timeout=10)
        by_account = httpx.post(
            f"{base}/api/alerts/{cancelled}/cancel", json={"reason": "已处理"}, headers=bearer, timeout=10
        )
        docs = httpx.get(f"{base}/docs", timeout=10)
    finally:
        stop(proc)

    assert refused.status_code == 401
    assert accepted.status_code == 202, accepted.text
    assert login.status_code == 200 and login.json()["role"] == "supervisor"
    assert me.json()["username"] == "zhuguan"
    assert by_account.status_code == 202, by_account.text
    assert docs.status_code == 200
    records = consume_all(kafka_bootstrap, settings.topic_control, idle_s=0.5)
    assert [(r["value"]["action"], r["value"]["actor"]) for r in records] == [
        ("escalate_alert", "主管"),
        ("cancel_alert", "zhuguan"),
    ]
    assert records[0]["value"]["request_id"] == accepted.json()["request_id"]
    text = log.read_text()
    assert f"escalate_alert of alert {escalated} by 主管 accepted" in text
    assert "console login of zhuguan (supervisor)" in text
    for secret in (TOKEN, password, login.json()["access_token"]):
        assert secret not in text
        assert secret not in added.stdout + added.stderr
