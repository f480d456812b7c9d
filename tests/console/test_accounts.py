"""Accounts, roles and the audit log of the console API, against the real (embedded) PostgreSQL and
broker: login, access tokens (expired, forged, outdated), the 401/403 matrix of every endpoint for every
role and the service token, and one audit row per write with its before and after."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from starlette.testclient import TestClient

from console.accounts import hash_password
from console.app import create_app
from tests.console.alert_rows import insert_alert
from tests.console.console_client import JWT_SECRET, ROLES, TOKEN, bearer, console, craft, login
from tests.console.console_rows import PASSWORD, insert_session, insert_user
from tests.customer_rows import customer_event, insert_customers
from tests.report_rows import insert_report, report_event
from tests.support import consume_all
from worktool.settings import Settings

pytestmark = pytest.mark.integration

# ---------------------------------------------------------------------------------------------
# Login and tokens


def test_login_gives_a_short_lived_bearer_token_with_the_role(
    settings: Settings, users: dict[str, str]
) -> None:
    with console(settings) as client:
        response = client.post("/api/auth/login", json={"username": "staff", "password": PASSWORD})
        answer = response.json()
        me = client.get("/api/auth/me", headers=bearer(answer["access_token"]))

    assert response.status_code == 200
    assert set(answer) == {"access_token", "token_type", "expires_in", "role"}
    assert answer["token_type"] == "bearer" and answer["role"] == "staff"
    assert answer["expires_in"] == settings.jwt_ttl_s == 1800
    assert jwt.get_unverified_header(answer["access_token"])["alg"] == "HS256"
    claims = jwt.decode(answer["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "role", "iat", "exp"}
    assert claims["sub"] == "staff" and claims["role"] == "staff"
    assert claims["exp"] - claims["iat"] == 1800
    assert abs(claims["iat"] - datetime.now(UTC).timestamp()) < 60
    assert me.status_code == 200
    assert me.json() == {
        "username": "staff",
        "role": "staff",
        "kind": "user",
        "permissions": ["alerts.escalate", "read", "staff.status", "tasks.create", "tasks.manage"],
    }


def test_failed_logins_are_401_and_do_not_tell_which_part_was_wrong(
    settings: Settings, users: dict[str, str], fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    insert_user(fresh_database_url, "gone", "supervisor", disabled=True)
    attempts = [
        {"username": "admin", "password": "wrong-password-123"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "gone", "password": PASSWORD},  # disabled
        {"username": "Admin", "password": PASSWORD},  # names are case-sensitive
    ]
    with caplog.at_level(logging.INFO), console(settings) as client:
        responses = [client.post("/api/auth/login", json=a) for a in attempts]
        malformed = client.post("/api/auth/login", json={"username": "admin", "password": "x" * 2000})

    assert [r.status_code for r in responses] == [401] * 4
    assert {r.json()["detail"] for r in responses} == {"wrong username or password"}
    assert all(r.headers["www-authenticate"] == "Bearer" for r in responses)
    assert malformed.status_code == 422 and "x" * 100 not in malformed.text  # the input is not echoed
    assert "failed console login for 'nobody' from 127.0.0.1" in caplog.text
    assert PASSWORD not in caplog.text and "wrong-password-123" not in caplog.text


def test_expired_forged_and_outdated_tokens_are_401(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    tokens = {
        "expired": craft({"iat": past, "exp": past + timedelta(minutes=30)}),
        "other secret": craft({}, secret="another-secret-of-at-least-32-bytes!!"),
        "no exp": craft({"exp": None}),
        "no role": craft({"role": None}),
        "unknown role": craft({"role": "root"}),
        "unknown account": craft({"sub": "mallory"}),
        "not a jwt": "not.a.jwt",
        "alg none": jwt.encode(
            {"sub": "admin", "role": "admin", "iat": 1, "exp": 9999999999}, None, algorithm="none"
        ),
    }
    with console(settings) as client:
        valid = login(client, "supervisor")
        with psycopg.connect(fresh_database_url) as conn:  # an admin makes the supervisor a staff member
            conn.execute("UPDATE console_users SET role = 'staff' WHERE username = 'supervisor'")
        outdated = client.get("/api/alerts", headers=valid)
        disabled_token = login(client, "inspector")
        with psycopg.connect(fresh_database_url) as conn:
            conn.execute("UPDATE console_users SET disabled = true WHERE username = 'inspector'")
        disabled = client.get("/api/alerts", headers=disabled_token)
        answers = {name: client.get("/api/alerts", headers=bearer(token)) for name, token in tokens.items()}
        fresh = client.get("/api/alerts", headers=bearer(craft({})))

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(tokens, 401)
    assert answers["expired"].json()["detail"] == "the access token has expired: log in again"
    assert outdated.status_code == 401 and "role has changed" in outdated.json()["detail"]
    assert disabled.status_code == 401
    assert fresh.status_code == 200  # the crafted claims are right: only what each case changed is wrong


def test_accounts_from_the_users_file_log_in_and_cannot_be_shadowed(
    settings: Settings, users: dict[str, str], tmp_path: Path
) -> None:
    users_file = tmp_path / "users.yaml"
    users_file.write_text(
        f"users:\n  - username: 质检-王\n    role: inspector\n    password_hash: '{hash_password('file-account-pass')}'\n",
        encoding="utf-8",
    )
    with console(settings.model_copy(update={"users_file": users_file})) as client:
        headers = login(client, "质检-王", "file-account-pass")
        me = client.get("/api/auth/me", headers=headers).json()
        admin = login(client, "admin")
        listed = client.get("/api/users", headers=admin).json()
        shadow = client.post(
            "/api/users",
            headers=admin,
            json={"username": "质检-王", "role": "admin", "password": "another-pass-1"},
        )

    assert me["role"] == "inspector"
    assert [(u["username"], u["source"]) for u in listed][0] == ("质检-王", "file")
    assert all("password_hash" not in u for u in listed)
    assert shadow.status_code == 409


# ---------------------------------------------------------------------------------------------
# 401 / 403 for every endpoint

SESSION = "group:矩阵群"
TASK = "task_matrix"
CUSTOMER = "客户甲"

# name -> (method, path, body); writes send a body the endpoint rejects (422), so an allowed call
# proves the authorization passed without changing anything.
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "me": ("GET", "/api/auth/me", None),
    "sessions": ("GET", "/api/sessions", None),
    "session": ("GET", f"/api/sessions/{SESSION}", None),
    "alerts": ("GET", "/api/alerts", None),
    "alert": ("GET", "/api/alerts/{alert_id}", None),
    "cancel": ("POST", "/api/alerts/{alert_id}/cancel", {"reason": ""}),
    "escalate": ("POST", "/api/alerts/{alert_id}/escalate", {"reason": ""}),
    "commands": ("GET", "/api/commands", None),
    "robots": ("GET", "/api/robots", None),
    "ai_logs": ("GET", "/api/ai-logs", None),
    "audit": ("GET", "/api/audit", None),
    "users": ("GET", "/api/users", None),
    "user_create": ("POST", "/api/users", {"username": "x"}),
    "user_change": ("PATCH", "/api/users/staff", {"role": "root"}),
    "llm_keys": ("GET", "/api/llm/keys", None),
    "llm_key_set": ("PUT", "/api/llm/keys/openai", {"api_key": "short"}),
    "tasks": ("GET", "/api/tasks", None),
    "task_types": ("GET", "/api/tasks/types", None),
    "task": ("GET", f"/api/tasks/{TASK}", None),
    "task_create": ("POST", "/api/tasks", {"session_id": ""}),
    "task_change": ("PATCH", f"/api/tasks/{TASK}", {"action": "teleport"}),
    "staff": ("GET", "/api/staff", None),
    "staff_status": ("PUT", "/api/staff/售后-小李/status", {"status": "asleep"}),
    "daily_report": ("GET", "/api/reports/daily", None),
    "customers": ("GET", "/api/customers", None),
    "customer": ("GET", f"/api/customers/{SESSION}/{CUSTOMER}", None),
    "kb_search": ("GET", "/api/kb/search?q=扫码", None),
    "personas": ("GET", "/api/personas", None),
    "persona": ("GET", "/api/personas/service", None),
    "persona_put": ("PUT", "/api/personas/service", {"emoji": "lots"}),
}
READ = {"me", "sessions", "session", "alerts", "alert", "commands", "robots", "tasks", "task_types", "task",
        "staff", "daily_report", "customers", "customer", "kb_search"}  # fmt: skip
DESK = {"task_create", "task_change", "staff_status"}
# The policy, stated here on its own rather than read from console/permissions.py.
ALLOWED: dict[str, set[str]] = {
    "admin": set(ENDPOINTS),
    "supervisor": READ | DESK | {"cancel", "escalate", "ai_logs"},
    "staff": READ | DESK | {"escalate"},
    "inspector": READ | {"ai_logs"},
}


def _request(client: TestClient, name: str, alert_id: str, headers: dict[str, str]) -> int:
    method, path, body = ENDPOINTS[name]
    return client.request(method, path.format(alert_id=alert_id), json=body, headers=headers).status_code


def _expected(name: str, allowed: set[str]) -> int:
    if name not in allowed:
        return 403
    return 200 if ENDPOINTS[name][2] is None else 422


def api_operations(settings: Settings) -> set[tuple[str, str]]:
    """(METHOD, path) of every /api operation the app documents, but the monitor page's (console/monitor.py,
    another router: checked by the 401 test only) and the login (open)."""
    paths = create_app(settings).openapi()["paths"]
    return {
        (method.upper(), path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if path.startswith("/api/")
        and "monitor" not in operation.get("tags", [])
        and path != "/api/auth/login"
    }


def test_the_matrix_names_every_endpoint(settings: Settings) -> None:
    placeholders = {
        SESSION: "{session_id}",
        "/users/staff": "/users/{username}",
        "/keys/openai": "/keys/{provider}",
        f"/tasks/{TASK}": "/tasks/{task_id}",
        "/staff/售后-小李/status": "/staff/{name}/status",
        f"{{session_id}}/{CUSTOMER}": "{session_id}/{name}",
        "/personas/service": "/personas/{code}",
        "?q=扫码": "",
    }
    named = set()
    for method, path, _ in ENDPOINTS.values():
        for concrete, placeholder in placeholders.items():
            path = path.replace(concrete, placeholder)
        named.add((method, path))
    assert api_operations(settings) == named


@pytest.mark.parametrize("caller", [*ROLES, "service:supervisor", "service:inspector"])
def test_each_role_gets_exactly_its_endpoints(
    caller: str, settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    alert_id = insert_alert(fresh_database_url)
    insert_session(fresh_database_url, SESSION, messages=1)
    insert_report(fresh_database_url, report_event("2026-03-01"))
    insert_customers(fresh_database_url, customer_event(CUSTOMER, session_id=SESSION))
    with psycopg.connect(fresh_database_url) as conn:
        conn.execute(
            "INSERT INTO after_sales_tasks (task_id, session_id, task_type, priority, status, opened_at) "
            "VALUES (%s, %s, 'other', 'normal', 'pending', now())",
            (TASK, SESSION),
        )
    role = caller.removeprefix("service:")
    with console(settings.model_copy(update={"api_token_role": role})) as client:
        headers = bearer(TOKEN) if caller.startswith("service:") else login(client, caller)
        got = {name: _request(client, name, alert_id, headers) for name in ENDPOINTS}

    assert got == {name: _expected(name, ALLOWED[role]) for name in ENDPOINTS}


def test_no_wrong_or_expired_token_is_401_everywhere(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    alert_id = insert_alert(fresh_database_url)
    past = datetime.now(UTC) - timedelta(hours=1)
    credentials = {
        "none": {},
        "wrong": bearer("wrong-token"),
        "basic": {"Authorization": f"Basic {TOKEN}"},
        "expired": bearer(craft({"iat": past, "exp": past + timedelta(minutes=5)})),
    }
    with console(settings) as client:
        got = {
            (c, name): _request(client, name, alert_id, h)
            for c, h in credentials.items()
            for name in ENDPOINTS
        }
        # Every documented GET, the monitor page's included, is behind the same wall.
        paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
        others = {
            path: client.get(path.replace("{", "").replace("}", "")).status_code
            for path, operations in paths.items()
            if path.startswith("/api/") and "get" in operations
        }

    assert got == dict.fromkeys(got, 401)
    assert others == dict.fromkeys(others, 401)
    assert consume_all(settings.kafka_bootstrap_servers or "", settings.topic_control, idle_s=0.3) == []
