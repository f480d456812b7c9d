"""The audit log (one row per write, with before/after, none for a refused write) and the read
endpoints' pages and filters, against the real (embedded) PostgreSQL and broker."""

from __future__ import annotations

import json

import psycopg
import pytest

from console.app import create_app
from infra.embedded import free_port
from tests.console.alert_rows import insert_alert
from tests.console.console_client import TOKEN, bearer, console, login
from tests.console.console_rows import (
    PASSWORD,
    insert_ai_log,
    insert_command,
    insert_robot,
    insert_session,
    insert_user,
)
from tests.support import consume_all
from worktool.settings import Settings

pytestmark = pytest.mark.integration


def audit_rows(fresh_database_url: str) -> list[dict]:
    with psycopg.connect(fresh_database_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM audit_log ORDER BY audit_id").fetchall()


def test_every_write_is_audited_with_before_and_after(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    escalated = insert_alert(fresh_database_url, level=2, status="escalated")
    opened = insert_alert(fresh_database_url, level=1)
    with console(settings, client_host="198.51.100.23") as client:
        admin = login(client, "admin")
        cancel = client.post(f"/api/alerts/{escalated}/cancel", json={"reason": "客户已确认"}, headers=admin)
        escalate = client.post(
            f"/api/alerts/{opened}/escalate",
            json={"reason": "再次催促", "actor": "值班"},
            headers=bearer(TOKEN),
        )
        created = client.post(
            "/api/users",
            json={"username": "新客服", "role": "staff", "password": "new-staff-pass-1"},
            headers=admin,
        )
        changed = client.patch(
            "/api/users/新客服", json={"role": "inspector", "password": "changed-pass-22"}, headers=admin
        )
        listed = client.get("/api/audit", headers=admin)
        only_users = client.get("/api/audit?target_type=user&limit=1", headers=admin)
        relogin = client.post("/api/auth/login", json={"username": "新客服", "password": "changed-pass-22"})

    assert [r.status_code for r in (cancel, escalate, created, changed)] == [202, 202, 201, 200]
    assert relogin.json()["role"] == "inspector"
    rows = audit_rows(fresh_database_url)
    assert [(r["action"], r["actor"], r["actor_role"], r["target_id"]) for r in rows] == [
        ("alert.cancel", "admin", "admin", escalated),
        ("alert.escalate", "api-token", "supervisor", opened),
        ("user.create", "admin", "admin", "新客服"),
        ("user.update", "admin", "admin", "新客服"),
    ]
    assert {r["client_addr"] for r in rows} == {"198.51.100.23"}
    cancel_row, escalate_row, create_row, update_row = rows
    assert cancel_row["before"] == {"status": "escalated", "alert_level": 2}
    assert cancel_row["after"] == {
        "status": "cancelled",
        "alert_level": 2,
        "cancel_reason": "manual",
        "reason": "客户已确认",
        "actor": "admin",
    }
    assert escalate_row["before"] == {"status": "open", "alert_level": 1}
    assert escalate_row["after"] == {
        "status": "escalated",
        "alert_level": 2,
        "reason": "再次催促",
        "actor": "值班",
    }
    records = {r["value"]["request_id"]: r["value"] for r in consume_all(
        settings.kafka_bootstrap_servers or "", settings.topic_control, idle_s=0.5
    )}  # fmt: skip
    assert set(records) == {cancel_row["request_id"], escalate_row["request_id"]}
    assert records[cancel_row["request_id"]]["actor"] == "admin"  # the account, not a claimed name
    assert create_row["before"] is None
    assert create_row["after"] == {
        "username": "新客服",
        "role": "staff",
        "disabled": False,
        "password_changed": True,
    }
    assert update_row["before"] == {"username": "新客服", "role": "staff", "disabled": False}
    assert update_row["after"]["role"] == "inspector" and update_row["after"]["password_changed"] is True
    everything = json.dumps(rows, default=str, ensure_ascii=False)
    assert (
        "new-staff-pass-1" not in everything
        and "changed-pass-22" not in everything
        and "$argon2" not in everything
    )

    page = listed.json()
    assert page["total"] == 4 and [i["action"] for i in page["items"]][0] == "user.update"  # newest first
    assert only_users.json()["total"] == 2 and len(only_users.json()["items"]) == 1


def test_refused_and_unacknowledged_writes_leave_no_audit_row(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    closed = insert_alert(fresh_database_url, status="cancelled")
    opened = insert_alert(fresh_database_url)
    with console(settings) as client:
        headers = login(client, "supervisor")
        refused = client.post(f"/api/alerts/{closed}/cancel", json={"reason": "x"}, headers=headers)
        admin = login(client, "admin")
        demote_self = client.patch("/api/users/admin", json={"role": "staff"}, headers=admin)
        disable_self = client.patch("/api/users/admin", json={"disabled": True}, headers=admin)
        forbidden = client.post(
            "/api/users", json={"username": "a", "role": "admin", "password": "p" * 12}, headers=headers
        )
        duplicate = client.post(
            "/api/users",
            json={"username": "staff", "role": "admin", "password": "p" * 12},
            headers=login(client, "admin"),
        )
    silent = settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}", "api_produce_timeout_s": 1.0}
    )
    with console(silent) as client:
        unacknowledged = client.post(
            f"/api/alerts/{opened}/cancel", json={"reason": "x", "actor": "脚本"}, headers=bearer(TOKEN)
        )

    assert (
        refused.status_code,
        forbidden.status_code,
        duplicate.status_code,
        unacknowledged.status_code,
    ) == (
        409,
        403,
        409,
        503,
    )
    assert demote_self.status_code == disable_self.status_code == 409
    assert audit_rows(fresh_database_url) == []


def test_the_audit_log_is_append_only(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    with console(settings) as client:
        client.patch("/api/users/staff", json={"disabled": True}, headers=login(client, "admin"))
    with (
        psycopg.connect(fresh_database_url) as conn,
        pytest.raises(psycopg.errors.RaiseException, match="append-only"),
    ):
        conn.execute("UPDATE audit_log SET actor = 'someone else'")
    with (
        psycopg.connect(fresh_database_url) as conn,
        pytest.raises(psycopg.errors.RaiseException, match="append-only"),
    ):
        conn.execute("DELETE FROM audit_log")
    assert [r["actor"] for r in audit_rows(fresh_database_url)] == ["admin"]


# ---------------------------------------------------------------------------------------------
# Reads


def test_sessions_page_with_last_message_and_open_alerts(settings: Settings, fresh_database_url: str) -> None:
    insert_user(fresh_database_url, "reader", "inspector")
    insert_session(fresh_database_url, "group:A群", messages=5, minute=0)  # last message at minute 4
    insert_session(
        fresh_database_url, "group:B群", messages=2, minute=10, status="staff_handling"
    )  # at minute 11
    insert_session(fresh_database_url, "group:C群", messages=1, minute=5)  # at minute 5
    insert_alert(fresh_database_url, session_id="group:A群")
    insert_alert(fresh_database_url, session_id="group:A群", status="escalated", level=2)
    insert_alert(fresh_database_url, session_id="group:A群", status="resolved")
    with console(settings) as client:
        h = login(client, "reader", PASSWORD)
        first = client.get("/api/sessions?limit=2", headers=h).json()
        second = client.get("/api/sessions?limit=2&offset=2", headers=h).json()
        handled = client.get("/api/sessions?status=staff_handling", headers=h).json()
        too_big = client.get("/api/sessions?limit=501", headers=h)
        zero = client.get("/api/sessions?limit=0", headers=h)

    assert first["total"] == 3 and first["limit"] == 2 and first["offset"] == 0
    assert [s["session_id"] for s in first["items"] + second["items"]] == [
        "group:B群",
        "group:C群",
        "group:A群",
    ]
    a = second["items"][0]
    assert a["open_alerts"] == 2 and a["message_count"] == 5
    assert a["last_message"]["message_id"] == "group:A群:m04" and a["last_message"]["content"] == "第4条消息"
    assert a["last_message"]["received_at"] == "2026-03-02T09:04:00.000Z"
    assert first["items"][0]["open_alerts"] == 0
    assert [s["session_id"] for s in handled["items"]] == ["group:B群"] and handled["total"] == 1
    assert too_big.status_code == zero.status_code == 422


def test_session_detail_pages_its_messages(settings: Settings, fresh_database_url: str) -> None:
    insert_user(fresh_database_url, "reader", "staff")
    insert_session(fresh_database_url, "group:A群", messages=7)
    insert_session(fresh_database_url, "group:售后/投诉群", messages=1)  # a name with a slash
    with console(settings) as client:
        h = login(client, "reader")
        newest = client.get("/api/sessions/group:A群?limit=3", headers=h).json()
        oldest = client.get("/api/sessions/group:A群?limit=3&offset=3&order=asc", headers=h).json()
        staff = client.get("/api/sessions/group:A群?sender_type=staff", headers=h).json()
        missing = client.get("/api/sessions/group:nowhere", headers=h)
        slashed = client.get("/api/sessions/group:售后%2F投诉群", headers=h)

    assert newest["session"]["session_id"] == "group:A群"
    assert newest["messages"]["total"] == 7
    assert [m["message_id"][-3:] for m in newest["messages"]["items"]] == ["m06", "m05", "m04"]
    assert [m["message_id"][-3:] for m in oldest["messages"]["items"]] == ["m03", "m04", "m05"]
    assert [m["message_id"][-3:] for m in staff["messages"]["items"]] == ["m05", "m02"]
    assert {m["sender_type"] for m in staff["messages"]["items"]} == {"staff"}
    assert missing.status_code == 404
    assert slashed.status_code == 200 and slashed.json()["session"]["session_id"] == "group:售后/投诉群"


def test_alerts_commands_robots_and_ai_logs_filter_and_page(
    settings: Settings, fresh_database_url: str
) -> None:
    insert_user(fresh_database_url, "qa", "inspector")
    ids = {
        "open1": insert_alert(fresh_database_url, level=1),
        "esc2": insert_alert(fresh_database_url, level=2, status="escalated"),
        "esc3": insert_alert(fresh_database_url, level=3, status="escalated", alert_type="user_complaint"),
        "done": insert_alert(fresh_database_url, status="cancelled"),
    }
    for i, status in enumerate(["pending", "sent", "failed", "failed", "completed"]):
        insert_command(fresh_database_url, f"cmd-{i}", status, minute=i, channel="sms" if i == 4 else "wecom")
    insert_robot(fresh_database_url, "robot-day", "online", ["group:A群", "group:B群"])
    insert_robot(fresh_database_url, "robot-night", "offline", [])
    for i, status in enumerate(["success", "error", "success", "timeout"]):
        insert_ai_log(fresh_database_url, f"call-{i}", status, minute=i)
    with console(settings) as client:
        h = login(client, "qa")
        active = client.get("/api/alerts?status=open&status=escalated", headers=h).json()
        level_2_3 = client.get("/api/alerts?level=2&level=3&type=staff_no_reply", headers=h).json()
        bad_level = client.get("/api/alerts?level=5", headers=h)
        failed = client.get("/api/commands?status=failed", headers=h).json()
        sms = client.get("/api/commands?channel=sms", headers=h).json()
        commands = client.get("/api/commands?limit=2&offset=1", headers=h).json()
        robots = client.get("/api/robots", headers=h).json()
        offline = client.get("/api/robots?status=offline", headers=h).json()
        errors = client.get("/api/ai-logs?status=error&status=timeout", headers=h).json()
        alert = client.get(f"/api/alerts/{ids['esc2']}", headers=h).json()

    assert active["total"] == 3 and {a["alert_id"] for a in active["items"]} == {
        ids["open1"],
        ids["esc2"],
        ids["esc3"],
    }
    assert [a["alert_id"] for a in level_2_3["items"]] == [ids["esc2"]]
    assert bad_level.status_code == 422
    assert {c["command_id"] for c in failed["items"]} == {"cmd-2", "cmd-3"}
    assert [c["command_id"] for c in sms["items"]] == ["cmd-4"] and sms["items"][0]["robot_id"] is None
    assert commands["total"] == 5 and [c["command_id"] for c in commands["items"]] == ["cmd-3", "cmd-2"]
    assert [(r["robot_id"], r["status"], r["sessions"]) for r in robots["items"]] == [
        ("robot-day", "online", 2),
        ("robot-night", "offline", 0),
    ]
    assert [r["robot_id"] for r in offline["items"]] == ["robot-night"]
    assert [c["call_id"] for c in errors["items"]] == ["call-3", "call-1"]
    assert errors["items"][0]["request_duration_ms"] == 420 and errors["items"][0]["ai_input"]
    assert alert["escalation_history"] == [
        {"at": "2026-03-02T09:40:00.000Z", "from_level": 1, "to_level": 2, "by": "rules"}
    ]


def test_the_openapi_document_describes_the_read_endpoints(settings: Settings) -> None:
    spec = create_app(settings).openapi()
    schemas = spec["components"]["schemas"]
    assert {
        "SessionSummary",
        "SessionDetail",
        "CommandRow",
        "RobotRow",
        "AiLogRow",
        "AuditRow",
        "LoginResponse",
    } <= set(schemas)
    alerts = spec["paths"]["/api/alerts"]["get"]
    assert {p["name"] for p in alerts["parameters"]} >= {"status", "level", "type", "limit", "offset"}
    assert {"200", "401", "403", "422"} <= set(alerts["responses"])
    limit = next(p for p in alerts["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500
