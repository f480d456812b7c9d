"""Console input: a NUL or other control character, a lone surrogate or an over-long value in any query
filter, path id or text body field is a 422 with a JSON error (PostgreSQL text and jsonb cannot hold NUL:
it was a 500), and the pooled database connections survive a PostgreSQL restart (the first call after one
was a 503)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from infra.embedded import EmbeddedPostgres, free_port
from infra.migrate import apply_up
from tests.console.alert_rows import insert_alert
from tests.console.console_client import JWT_SECRET, TOKEN, bearer, console, login
from tests.console.console_rows import PASSWORD, insert_session, insert_user
from tests.support import chaos_scale, consume_all
from worktool.settings import Settings

pytestmark = pytest.mark.integration

ADMIN = bearer(TOKEN)
SESSION = "group:视频号运营A群"
BAD = {
    "NUL": "\x00",
    "NUL inside": "robot\x00-1",
    "escape": "\x1b[31m",
    "DEL": "a\x7f",
    "C1 next line": "a\x85b",
    "newline": "a\nb",
}


def _admin(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_token_role": "admin"})


def _pct(text: str) -> str:
    return "".join(c if c.isalnum() else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


# (method, path, query, json body); {bad} is replaced by the bad value (percent-encoded in paths).
CASES: list[tuple[str, str, dict[str, str] | None, dict[str, Any] | None]] = [
    ("GET", "/api/sessions", {"status": "{bad}"}, None),
    ("GET", "/api/sessions/{bad}", None, None),
    ("GET", f"/api/sessions/{_pct(SESSION)}", {"sender_type": "{bad}"}, None),
    ("GET", "/api/alerts/{bad}", None, None),
    ("GET", "/api/alerts", {"type": "{bad}"}, None),
    ("GET", "/api/alerts", {"session_id": "{bad}"}, None),
    ("GET", "/api/alerts", {"robot_id": "{bad}"}, None),
    ("GET", "/api/commands", {"robot_id": "{bad}"}, None),
    ("GET", "/api/commands", {"cause_id": "{bad}"}, None),
    ("GET", "/api/ai-logs", {"status": "{bad}"}, None),
    ("GET", "/api/ai-logs", {"operation_type": "{bad}"}, None),
    ("GET", "/api/ai-logs", {"provider": "{bad}"}, None),
    ("GET", "/api/ai-logs", {"session_id": "{bad}"}, None),
    ("GET", "/api/ai-logs", {"message_id": "{bad}"}, None),
    ("GET", "/api/audit", {"actor": "{bad}"}, None),
    ("GET", "/api/audit", {"target_id": "{bad}"}, None),
    ("POST", "/api/alerts/{bad}/cancel", None, {"reason": "test", "actor": "ops"}),
    ("POST", "/api/alerts/{alert}/cancel", None, {"reason": "test", "actor": "{bad}"}),
    ("POST", "/api/alerts/{alert}/escalate", None, {"reason": "x{bad}", "actor": "ops"}),
    ("PATCH", "/api/users/{bad}", None, {"disabled": True}),
    ("POST", "/api/users", None, {"username": "newuser", "role": "staff", "password": "long-enough{bad}"}),
    ("PUT", "/api/llm/keys/openai", None, {"api_key": "sk-test-{bad}-123456"}),
    ("POST", "/api/auth/login", None, {"username": "admin{bad}", "password": PASSWORD}),
]


def _fill(value: Any, bad: str, alert_id: str, in_path: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, bad, alert_id) for k, v in value.items()}
    if isinstance(value, str):
        return value.replace("{bad}", _pct(bad) if in_path else bad).replace("{alert}", alert_id)
    return value


def _send(client: TestClient, case: tuple[Any, ...], bad: str, alert_id: str) -> Any:
    method, path, query, body = case
    return client.request(
        method,
        _fill(path, bad, alert_id, in_path=True),
        params=_fill(query, bad, alert_id),
        json=_fill(body, bad, alert_id),
        headers=ADMIN,
    )


def _is_clean_422(response: Any) -> bool:
    if response.status_code != 422 or not response.headers["content-type"].startswith("application/json"):
        return False
    detail = response.json()["detail"]
    return isinstance(detail, list) and bool(detail) and all("msg" in d and "loc" in d for d in detail)


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_control_characters_in_any_filter_id_or_text_field_are_422(
    bad: str, settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    # A reason may have line breaks: that case is the other test's.
    cases = [c for c in CASES if "reason" not in str(c[3])] if bad == "a\nb" else CASES
    alert_id = insert_alert(fresh_database_url)
    insert_session(fresh_database_url, SESSION, messages=1)
    with console(_admin(settings)) as client:
        answers = {f"{c[0]} {c[1]} {c[2] or c[3]}": _send(client, c, bad, alert_id) for c in cases}

    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 422)
    assert all(_is_clean_422(r) for r in answers.values())
    assert all(bad not in r.text for r in answers.values())  # the input is not echoed
    assert consume_all(settings.kafka_bootstrap_servers or "", settings.topic_control, idle_s=0.3) == []
    with psycopg.connect(fresh_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_the_error_names_the_field_and_the_position(settings: Settings) -> None:
    with console(_admin(settings)) as client:
        response = client.get("/api/sessions", params={"status": "auto\x00"}, headers=ADMIN)
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "status", 0]
    assert "position 4 (U+0000)" in error["msg"]


def test_over_long_filters_and_ids_are_422(settings: Settings) -> None:
    long = "x" * 401
    with console(_admin(settings)) as client:
        answers = [
            client.get("/api/alerts", params={"robot_id": long}, headers=ADMIN),
            client.get("/api/sessions", params={"status": long}, headers=ADMIN),
            client.get(f"/api/alerts/{long}", headers=ADMIN),
            client.get(f"/api/sessions/{long}", headers=ADMIN),
            client.get("/api/audit", params={"actor": long}, headers=ADMIN),
            client.post(f"/api/alerts/{long}/cancel", json={"reason": "r", "actor": "a"}, headers=ADMIN),
            client.post("/api/alerts/a-1/cancel", json={"reason": "r" * 2001, "actor": "a"}, headers=ADMIN),
        ]
        at_the_limit = client.get("/api/alerts", params={"robot_id": "x" * 400}, headers=ADMIN)
    assert [r.status_code for r in answers] == [422] * len(answers)
    assert at_the_limit.status_code == 200 and at_the_limit.json()["total"] == 0


def test_a_lone_surrogate_in_a_json_body_is_422_not_500(settings: Settings, users: dict[str, str]) -> None:
    bodies = [
        b'{"username": "admin\\ud800", "password": "whatever-password"}',
        b'{"username": "admin", "password": "correct-horse\\udfff"}',
    ]
    with console(_admin(settings)) as client:
        answers = [
            client.post("/api/auth/login", content=body, headers={"Content-Type": "application/json"})
            for body in bodies
        ]
    assert [r.status_code for r in answers] == [422, 422]


def test_unicode_text_and_a_multi_line_reason_are_accepted(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    alert_id = insert_alert(fresh_database_url)
    insert_session(fresh_database_url, SESSION, messages=2)
    with console(_admin(settings)) as client:
        session = client.get(f"/api/sessions/{_pct(SESSION)}", headers=ADMIN)
        by_status = client.get("/api/sessions", params={"status": "auto"}, headers=ADMIN)
        cancelled = client.post(
            f"/api/alerts/{alert_id}/cancel",
            json={"reason": "用户已联系客服\n\t第二行", "actor": "值班员-小王"},
            headers=ADMIN,
        )
    assert session.status_code == 200 and session.json()["session"]["session_id"] == SESSION
    assert by_status.status_code == 200 and by_status.json()["total"] == 1
    assert cancelled.status_code == 202, cancelled.text
    with psycopg.connect(fresh_database_url) as conn:
        row = conn.execute("SELECT after->>'reason' FROM audit_log").fetchone()
    assert row == ("用户已联系客服\n\t第二行",)


# ---------------------------------------------------------------------------------------------
# Pooled connections across a PostgreSQL restart


@pytest.mark.chaos
def test_the_first_calls_after_a_postgres_restart_succeed(
    tmp_path: Path, kafka_bootstrap: str, unique_topics: Callable[..., dict[str, Any]]
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", port=free_port(), durable=False).start()
    try:
        apply_up(pg.url)
        insert_user(pg.url, "admin", "admin")
        settings = Settings(
            kafka_bootstrap_servers=kafka_bootstrap,
            database_url=pg.url,
            api_token=TOKEN,
            api_token_role="admin",
            jwt_secret=JWT_SECRET,
            data_dir=tmp_path / "data",
            **unique_topics(),
        )
        with console(settings) as client:
            user = login(client, "admin")
            before = [
                client.get(path, headers=ADMIN).status_code for path in ("/api/alerts", "/api/sessions")
            ]
            rounds = []
            for _ in range(chaos_scale()):
                pg.stop()
                pg.start()  # same port, same data
                rounds.append(
                    {
                        "read": client.get("/api/alerts", headers=ADMIN).status_code,
                        "account": client.get("/api/auth/me", headers=user).status_code,
                        "login": client.post(
                            "/api/auth/login", json={"username": "admin", "password": PASSWORD}
                        ).status_code,
                        "state": client.get("/api/monitor/state", headers=ADMIN).status_code,
                        "users": client.get("/api/users", headers=ADMIN).status_code,
                    }
                )
    finally:
        pg.stop()
    assert before == [200, 200]
    assert rounds == [dict.fromkeys(rounds[0], 200)] * chaos_scale()
