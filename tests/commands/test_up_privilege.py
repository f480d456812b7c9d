"""Least privilege under `worktool up` (issue 13, finding 6): each child its own database login (the
dispatcher none), a bearer token on every /metrics, a 0700 data directory with 0600 files, and
placeholder secrets refused at start-up with the variable named."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import psycopg
import pytest

from commands.up import Stack
from gateway.spool import Spool
from infra.embedded import ChildProcess, free_port
from tests.support import GROUP_MESSAGE, RunningStack, answers, running_up, up_env, wait_until
from worktool.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ROBOT = "wt_day_01"
ADMIN_TOKEN = "privilege-test-admin-token-5d1e"


def user_of(url: str) -> str:
    return unquote(urlsplit(url).username or "")


# --- units --------------------------------------------------------------------------------------------


def test_each_child_gets_only_its_own_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = "postgresql://owner:owner-secret-1234@127.0.0.1:5432/worktool"
    monkeypatch.setenv("DATABASE_URL", owner)
    monkeypatch.setenv(
        "WORKTOOL_DATABASE_URL_CONSOLE", "postgresql://c:console-secret-1234@127.0.0.1/worktool"
    )
    stack = Stack(Settings(data_dir=tmp_path / "data"))
    stack.database_url = owner
    stack.metrics_token = "metrics-token-for-every-part"
    stack.part_database_urls = {part: f"postgresql://{part}_login:pw-{part}@127.0.0.1/worktool" for part in
                                ("gateway", "dataflow", "console")}  # fmt: skip
    envs = {name: stack.child_env(name) for name in ("gateway", "dataflow", "console", "dispatcher")}
    assert not any("DATABASE_URL" in key for key in envs["dispatcher"])
    for part in ("gateway", "dataflow", "console"):
        assert user_of(envs[part]["DATABASE_URL"]) == f"{part}_login", part
        assert not [key for key in envs[part] if key.startswith("WORKTOOL_DATABASE_URL")], part
        assert "owner-secret-1234" not in json.dumps(envs[part]), part
    for name, env in envs.items():
        assert env["WORKTOOL_METRICS_TOKEN"] == "metrics-token-for-every-part", name


def test_an_external_database_without_part_logins_falls_back_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    owner = "postgresql://owner:owner-secret-1234@db.example:5432/worktool"
    dataflow = "postgresql://df:dataflow-secret-123@db.example:5432/worktool"
    stack = Stack(Settings(data_dir=tmp_path, database_url=owner, database_url_dataflow=dataflow))
    with caplog.at_level(logging.WARNING, logger="worktool.up"):
        stack._part_logins()
    assert stack.part_database_urls == {"gateway": owner, "dataflow": dataflow, "console": owner}
    (warning,) = [r.getMessage() for r in caplog.records if "LEAST PRIVILEGE OFF" in r.getMessage()]
    assert "WORKTOOL_DATABASE_URL_GATEWAY" in warning and "WORKTOOL_DATABASE_URL_CONSOLE" in warning
    assert "owner-secret" not in warning
    assert stack.child_env("dispatcher").get("DATABASE_URL") is None


@pytest.mark.parametrize(
    "variable,value",
    [
        ("WORKTOOL_METRICS_TOKEN", "change-me"),
        ("WORKTOOL_METRICS_TOKEN", "short-token"),
        ("WORKTOOL_API_TOKEN", "CHANGE_ME"),
        ("WORKTOOL_JWT_SECRET", "replace-me-with-a-long-random-value-please"),
        ("WORKTOOL_WEBHOOK_TOKENS", json.dumps({"wt_day_01": "change-me"})),
        ("WORKTOOL_TAXKB_API_KEY", "changeme"),
        ("DATABASE_URL", "postgresql://worktool:change-me@127.0.0.1:5432/worktool"),
    ],
)
def test_placeholder_secrets_are_refused_naming_the_variable(variable: str, value: str) -> None:
    problems = Settings(**{variable: value}).weak_secrets()
    assert len(problems) == 1 and variable in problems[0]
    assert value not in problems[0] or variable == "WORKTOOL_WEBHOOK_TOKENS"  # never the secret itself


def test_real_secrets_pass() -> None:
    settings = Settings(
        WORKTOOL_METRICS_TOKEN="Jq3-8yTnW0zKx1vPq2rL",
        WORKTOOL_API_TOKEN="console-test-token-7f3a9c",
        WORKTOOL_WEBHOOK_TOKENS=json.dumps({ROBOT: "chaos-token-42"}),
        DATABASE_URL="postgresql://postgres:Zr8pQ1@127.0.0.1/worktool",
    )
    assert settings.weak_secrets() == []


@pytest.mark.parametrize("command", ["up", "gateway", "console", "dataflow", "dispatcher"])
def test_services_refuse_to_start_on_a_placeholder(command: str, tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKTOOL_", "DATABASE_", "KAFKA_", "REDIS_"))
    }
    env |= {"WORKTOOL_METRICS_TOKEN": "change-me", "WORKTOOL_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "commands.cli", command], env=env, cwd=REPO, capture_output=True, timeout=120
    )
    assert result.returncode == 2, result.stderr.decode()
    assert b"WORKTOOL_METRICS_TOKEN holds a placeholder" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_spool_segments_and_child_logs_are_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool")
        spool.append([b'{"body": "a full message"}'])
        spool.close()
        (segment,) = [p for p in (tmp_path / "spool").iterdir() if p.suffix == ".jsonl"]
        assert stat.S_IMODE(segment.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
        log = tmp_path / "logs" / "child.log"
        child = ChildProcess("child", [sys.executable, "-c", "print('hello')"], log).start()
        wait_until(lambda: not child.running, 30, what="the child to finish")
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    finally:
        os.umask(previous)


# --- the real stack -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp = tmp_path_factory.mktemp("up-privilege")
    env = up_env(
        free_port(),
        tmp / "data",
        WORKTOOL_API_PORT=str(free_port()),
        WORKTOOL_API_TOKEN=ADMIN_TOKEN,
        WORKTOOL_API_TOKEN_ROLE="admin",
        # No WORKTOOL_METRICS_TOKEN: `up` generates one into the data dir.
    )
    # ready once the gateway's health check passes, as its own login
    with running_up(env, tmp / "up.log", ready_s=180) as running:
        yield running


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


@pytest.mark.integration
def test_under_up_each_child_connects_as_its_own_login(stack: RunningStack) -> None:
    processes = stack.info["processes"]
    assert "DATABASE_URL" not in environ(processes["dispatcher"]["pid"])
    owner = stack.info["database_url"]
    for part in ("gateway", "dataflow", "console"):
        url = environ(processes[part]["pid"])["DATABASE_URL"]
        assert user_of(url) == f"worktool_{part}_login", part
        assert user_of(owner) not in (user_of(url), "")
    # Nobody but the migrations connects as the owner: the sessions the server sees.
    with psycopg.connect(owner, autocommit=True) as conn:

        def users() -> set[str]:
            rows = conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND usename IS NOT NULL"
            ).fetchall()
            return {u for (u,) in rows}

        # The gateway's health check keeps its connection (the dataflow's sink connects on its first write).
        wait_until(lambda: "worktool_gateway_login" in users(), 60, what="the gateway's connection")
        parts = {f"worktool_{part}_login" for part in ("gateway", "dataflow", "console")}
        assert users() <= parts


@pytest.mark.integration
def test_under_up_the_parts_work_with_their_least_privileges(stack: RunningStack) -> None:
    text = f"privilege {uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=stack.base, timeout=5) as gateway:
        body = {**GROUP_MESSAGE, "spoken": text, "rawSpoken": text}
        assert (
            gateway.post("/worktool/callback/message", params={"robotId": ROBOT}, json=body).status_code
            == 200
        )
    console_url = stack.info["console_url"].rstrip("/")
    with httpx.Client(base_url=console_url, timeout=10, headers=headers) as console:
        wait_until(lambda: answers(f"{console_url}/healthz"), 60, what="the console")

        def stored() -> bool:  # written by the dataflow's login, read by the console's
            response = console.get("/api/sessions")
            return response.status_code == 200 and text in response.text

        wait_until(stored, 90, what="the message in the console's sessions")
        name = f"p{uuid.uuid4().hex[:8]}"
        created = console.post(
            "/api/users", json={"username": name, "role": "staff", "password": "x" * 16 + "Aa1!"}
        )
        assert created.status_code in (200, 201), created.text
        audit = console.get("/api/audit", params={"target_id": name})
        assert audit.status_code == 200 and audit.json()["total"] == 1, audit.text


@pytest.mark.integration
def test_under_up_every_metrics_endpoint_needs_the_token(stack: RunningStack) -> None:
    token_file = stack.data_dir / "metrics_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    dispatcher_port = int(
        environ(stack.info["processes"]["dispatcher"]["pid"])["WORKTOOL_DISPATCHER_METRICS_PORT"]
    )
    urls = {
        "gateway": f"{stack.base}/metrics",
        "console": f"{stack.info['console_url'].rstrip('/')}/metrics",
        "dataflow": stack.info["dataflow_metrics_url"],
        "dispatcher": f"http://127.0.0.1:{dispatcher_port}/metrics",
    }
    for part, url in urls.items():

        def served(url: str = url) -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url, timeout=3).status_code == 401
            return False

        wait_until(served, 60, what=f"the {part}'s /metrics answering 401 without the token")
        assert (
            httpx.get(url, headers={"Authorization": "Bearer wrong-token-000000"}, timeout=3).status_code
            == 401
        )
        ok = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=3)
        assert ok.status_code == 200 and "# TYPE" in ok.text, part


@pytest.mark.integration
def test_under_up_the_data_dir_is_private(stack: RunningStack) -> None:
    # As root the embedded PostgreSQL runs as a system user who must traverse it (others: x only).
    assert stat.S_IMODE(stack.data_dir.stat().st_mode) == (0o701 if os.geteuid() == 0 else 0o700)
    logs = list((stack.data_dir / "logs").iterdir())
    assert {p.name for p in logs} >= {"gateway.log", "dataflow.log", "console.log", "postgres.log"}
    readable = []
    for path in stack.data_dir.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # files come and go while it runs
            mode = stat.S_IMODE(path.lstat().st_mode)
            if stat.S_ISREG(path.lstat().st_mode) and mode & 0o077:
                readable.append(f"{path.relative_to(stack.data_dir)} {mode:o}")
            if path.is_dir() and not path.is_symlink() and mode & 0o077 and path != stack.data_dir:
                readable.append(f"{path.relative_to(stack.data_dir)}/ {mode:o}")
    assert readable == []
