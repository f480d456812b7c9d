"""The console's after-sales task and desk endpoints (console/tasks.py) against the embedded broker and
PostgreSQL: what each accepted request writes on the control topic (and in the audit log), what each
refusal answers (and that it writes nothing), the permissions of each role, and the task board read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.console.console_client import console, login
from tests.console.console_rows import insert_session
from tests.support import consume_all
from worktool.models import ControlRecord
from worktool.settings import Settings

pytestmark = pytest.mark.integration

CONFIG = """
staff: [售后-小李, 售后-小张, 售后-老王]
after_sales:
  desk:
    - {name: 售后-小李, skills: [verification], max_open_tasks: 3}
    - {name: 售后-小张, skills: [account]}
"""
SESSION = "group:视频号运营A群"


@pytest.fixture
def desk_settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "business.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return settings.model_copy(update={"config_path": path})


def records(settings: Settings) -> list[ControlRecord]:
    assert settings.kafka_bootstrap_servers
    raw = consume_all(settings.kafka_bootstrap_servers, settings.topic_control, idle_s=0.5)
    return [ControlRecord.model_validate(r["value"]) for r in raw]


def audit_rows(settings: Settings) -> list[tuple[str, str, str]]:
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        return conn.execute("SELECT action, target_type, actor FROM audit_log ORDER BY audit_id").fetchall()


def insert_task(settings: Settings, task_id: str, **columns: Any) -> None:
    assert settings.database_url
    row = {"task_id": task_id, "session_id": SESSION, "task_type": "other", "priority": "normal",
           "status": "pending", "opened_at": datetime.now(UTC) - timedelta(minutes=10), **columns}  # fmt: skip
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            f"INSERT INTO after_sales_tasks ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
            list(row.values()),
        )


def test_staff_open_a_task_for_an_owner(desk_settings: Settings, users: dict[str, str]) -> None:
    assert desk_settings.database_url
    insert_session(desk_settings.database_url, SESSION, messages=2)
    with console(desk_settings) as client:
        headers = login(client, users["staff"])
        body = {
            "session_id": SESSION,
            "user_name": "用户甲",
            "task_type": "scan_qr",
            "description": "扫码认证",
        }
        r = client.post("/api/tasks", json=body, headers=headers)
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        refused = [
            client.post("/api/tasks", json={**body, "task_type": "teleport"}, headers=headers),
            client.post("/api/tasks", json={**body, "session_id": "group:没有这个群"}, headers=headers),
            client.post("/api/tasks", json={**body, "user_name": ""}, headers=headers),
            client.post("/api/tasks", json=body, headers=login(client, users["inspector"])),
        ]
        insert_task(
            desk_settings, "task_open", user_name="用户甲", task_type="scan_qr", status="waiting_user"
        )
        twice = client.post("/api/tasks", json=body, headers=headers)
    assert [x.status_code for x in refused] == [422, 404, 422, 403]
    assert twice.status_code == 409 and "task_open" in twice.json()["detail"]
    assert "configured: scan_qr, real_name" in refused[0].json()["detail"]
    [record] = records(desk_settings)  # the refusals wrote nothing
    assert (record.action, record.session_id, record.task_id, record.task_type, record.user_name) == (
        "create_task",
        SESSION,
        task_id,
        "scan_qr",
        "用户甲",
    )
    assert record.actor == users["staff"] and record.description == "扫码认证"
    assert audit_rows(desk_settings) == [("task.create", "task", users["staff"])]


def test_assigning_is_for_supervisors_and_goes_to_the_desk(
    desk_settings: Settings, users: dict[str, str]
) -> None:
    insert_task(desk_settings, "task_a", assigned_staff_name="售后-小李", status="assigned")
    insert_task(desk_settings, "task_done", status="completed")
    with console(desk_settings) as client:
        staff, boss = login(client, users["staff"]), login(client, users["supervisor"])
        move = {"action": "assign", "assignee": "售后-小张", "reason": "小李请假"}
        answers = [
            client.patch("/api/tasks/task_a", json=move, headers=staff),
            client.patch("/api/tasks/task_a", json={**move, "assignee": "路人"}, headers=boss),
            client.patch("/api/tasks/task_a", json={**move, "assignee": "售后-小李"}, headers=boss),
            client.patch("/api/tasks/task_none", json=move, headers=boss),
            client.patch("/api/tasks/task_done", json=move, headers=boss),
            client.patch("/api/tasks/task_a", json={"action": "assign", "reason": "?"}, headers=boss),
            client.patch("/api/tasks/task_a", json=move, headers=boss),
        ]
    assert [a.status_code for a in answers] == [403, 422, 409, 404, 409, 422, 202]
    [record] = records(desk_settings)
    assert (record.action, record.session_id, record.task_id, record.staff_name, record.reason) == (
        "assign_task",
        "desk",
        "task_a",
        "售后-小张",
        "小李请假",
    )


def test_staff_complete_and_cancel_tasks_in_their_session(
    desk_settings: Settings, users: dict[str, str]
) -> None:
    insert_task(desk_settings, "task_a", status="waiting_user")
    insert_task(desk_settings, "task_b")
    with console(desk_settings) as client:
        staff = login(client, users["staff"])
        done = client.patch(
            "/api/tasks/task_a", json={"action": "complete", "reason": "已扫码"}, headers=staff
        )
        gone = client.patch("/api/tasks/task_b", json={"action": "cancel", "reason": "重复"}, headers=staff)
        odd = client.patch("/api/tasks/task_b", json={"action": "finish"}, headers=staff)
    assert (done.status_code, gone.status_code, odd.status_code) == (202, 202, 422)
    got = sorted((r.task_id, r.action, r.task_outcome, r.session_id) for r in records(desk_settings))
    assert got == [
        ("task_a", "update_task", "completed", SESSION),
        ("task_b", "update_task", "cancelled", SESSION),
    ]
    assert [a[0] for a in audit_rows(desk_settings)] == ["task.complete", "task.cancel"]


def test_the_task_board_open_first_urgent_first_with_due_times(
    desk_settings: Settings, users: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    insert_task(desk_settings, "t_old", opened_at=now - timedelta(hours=5))  # other: 240 min -> overdue
    insert_task(desk_settings, "t_urgent", task_type="private_operation", priority="urgent",
                opened_at=now - timedelta(minutes=5), assigned_staff_name="售后-小张", status="assigned")  # fmt: skip
    insert_task(desk_settings, "t_closed", status="completed", status_at=now, completed_at=now)
    with console(desk_settings) as client:
        headers = login(client, users["inspector"])
        board = client.get("/api/tasks", headers=headers).json()
        overdue = client.get("/api/tasks", params={"overdue": "true"}, headers=headers).json()
        mine = client.get("/api/tasks", params={"assignee": "售后-小张"}, headers=headers).json()
        one = client.get("/api/tasks/t_urgent", headers=headers)
        missing = client.get("/api/tasks/t_nope", headers=headers)
    assert [t["task_id"] for t in board["items"]] == ["t_urgent", "t_old", "t_closed"]
    assert board["total"] == 3
    by_id = {t["task_id"]: t for t in board["items"]}
    assert by_id["t_old"]["overdue"] is True and by_id["t_urgent"]["overdue"] is False
    assert 299 < by_id["t_old"]["age_minutes"] < 302
    assert [t["task_id"] for t in overdue["items"]] == ["t_old"]
    assert [t["task_id"] for t in mine["items"]] == ["t_urgent"]
    assert one.json()["due_at"] is not None and missing.status_code == 404


def test_staff_availability_goes_to_the_desk(desk_settings: Settings, users: dict[str, str]) -> None:
    insert_task(desk_settings, "task_a", assigned_staff_name="售后-小李", status="assigned")
    with console(desk_settings) as client:
        staff = login(client, users["staff"])
        busy = client.put("/api/staff/售后-小李/status", json={"status": "busy"}, headers=staff)
        stranger = client.put("/api/staff/售后-老王/status", json={"status": "busy"}, headers=staff)
        odd = client.put("/api/staff/售后-小李/status", json={"status": "asleep"}, headers=staff)
        nope = client.put(
            "/api/staff/售后-小李/status", json={"status": "busy"}, headers=login(client, users["inspector"])
        )
        desk = client.get("/api/staff", headers=staff).json()
    assert (busy.status_code, stranger.status_code, odd.status_code, nope.status_code) == (202, 404, 422, 403)
    [record] = records(desk_settings)
    assert (record.action, record.session_id, record.staff_name, record.staff_status) == (
        "staff_status",
        "desk",
        "售后-小李",
        "busy",
    )
    # the desk_staff row comes from the dataflow; until then a member reads as online
    assert [(m["name"], m["status"], m["open_tasks"], m["skills"]) for m in desk] == [
        ("售后-小李", "online", 1, ["verification"]), ("售后-小张", "online", 0, ["account"]),
    ]  # fmt: skip


def test_the_service_token_must_name_its_actor(desk_settings: Settings, users: dict[str, str]) -> None:
    from tests.console.console_client import TOKEN, bearer

    settings = desk_settings.model_copy(update={"api_token": TOKEN})
    with console(settings) as client:
        r = client.put("/api/staff/售后-小李/status", json={"status": "offline"}, headers=bearer(TOKEN))
        ok = client.put(
            "/api/staff/售后-小李/status",
            json={"status": "offline", "actor": "脚本-排班"},
            headers=bearer(TOKEN),
        )
    assert (r.status_code, ok.status_code) == (422, 202)
    assert [x.actor for x in records(settings)] == ["脚本-排班"]


def test_the_task_types_for_the_board(desk_settings: Settings, users: dict[str, str]) -> None:
    with console(desk_settings) as client:
        types = client.get("/api/tasks/types", headers=login(client, users["inspector"]))
        anonymous = client.get("/api/tasks/types")
    assert types.status_code == 200 and anonymous.status_code == 401
    # configuration order; the defaults here (the config names no task_types)
    assert types.json() == {
        "scan_qr": "扫码认证", "real_name": "实名认证重做", "bind_phone": "绑定手机号",
        "appeal_video": "申诉自拍视频", "private_operation": "私自操作处理", "other": "其他售后",
    }  # fmt: skip
