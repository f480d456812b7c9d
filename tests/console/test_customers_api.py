"""`GET /api/customers` and `GET /api/customers/{session_id}/{name}` (console/customers.py) against the
embedded PostgreSQL, with rows written by the real chain: the sessions step's events for a short story
(operators/profiles.py) through the real projection (sinks/postgres.py). Filters, order, the detail with
history, tasks and alerts, 404, bad input, and who may read."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from operators.sessions import SessionPolicy, SessionStep
from operators.timers import Tick
from sinks.postgres import write_events
from tests.console.console_client import ROLES, TOKEN, bearer, console, login
from tests.customer_rows import customer_event, insert_customers
from tests.operators.test_session_rules import CONFIG, SID, at, events, message, staff
from worktool.settings import Settings

pytestmark = pytest.mark.integration

PATH = "/api/customers"


def play_story(database_url: str) -> None:
    """用户甲 needs a QR scan, is answered, @-ed, answers, and it is solved; 用户乙 complains."""
    step = SessionStep(SessionPolicy(CONFIG))
    story: list[Any] = [
        message("怎么扫码认证", 0, message_type="chat_after_sales"),
        staff("@用户甲 请扫一下码", 5, message_type="staff_at_user", mentions=("用户甲",)),
        message("好的我扫了", 8),
        message("已经解决了，谢谢", 30),
        staff("好的，有问题随时找我们", 31),
        message("我要投诉你们，太慢了", 32, sender="用户乙", message_type="chat_complaint", sentiment=-0.9),
        Tick(at(45)),
    ]
    out = [e for item in story for e in events(step.on_item(item))]
    with psycopg.connect(database_url, autocommit=True) as conn:
        write_events(conn, out)


def test_the_list_puts_the_least_healthy_first_and_filters(settings: Settings, users: dict[str, str]) -> None:
    assert settings.database_url
    play_story(settings.database_url)
    with console(settings) as client:
        headers = login(client, users["staff"])
        page = client.get(PATH, headers=headers).json()
        watch = client.get(PATH, params={"band": "watch"}, headers=headers).json()
        found = client.get(PATH, params={"q": "乙"}, headers=headers).json()
        recent = client.get(PATH, params={"order": "recent"}, headers=headers).json()
        none = client.get(PATH, params={"session_id": "group:别的群"}, headers=headers).json()

    assert page["total"] == 2
    first, second = page["items"]
    assert (first["user_name"], first["health_band"], first["alerts"]) == (
        "用户乙",
        "watch",
        {"user_complaint": 1},
    )
    assert (second["user_name"], second["health_band"]) == ("用户甲", "healthy")
    assert second["requirements"] == {"needs": 1, "opened": 1, "completed": 1, "cancelled": 0}
    assert second["cooperation"]["responded"] == 1 and second["open_tasks"] == []
    assert first["health_score"] < second["health_score"]
    assert [c["user_name"] for c in watch["items"]] == ["用户乙"]
    assert [c["user_name"] for c in found["items"]] == ["用户乙"]
    assert [c["user_name"] for c in recent["items"]] == ["用户乙", "用户甲"]  # 用户乙 spoke last
    assert none == {"items": [], "total": 0, "limit": 50, "offset": 0}


def test_one_customer_with_history_tasks_and_alerts(settings: Settings, users: dict[str, str]) -> None:
    assert settings.database_url
    play_story(settings.database_url)
    with console(settings) as client:
        headers = login(client, users["inspector"])
        mine = client.get(f"{PATH}/{quote(SID)}/{quote('用户甲')}", headers=headers)
        theirs = client.get(f"{PATH}/{quote(SID)}/{quote('用户乙')}", headers=headers)
        missing = client.get(f"{PATH}/{quote(SID)}/{quote('没来过')}", headers=headers)

    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["profile"]["user_name"] == "用户甲" and body["profile"]["session_id"] == SID
    assert [m["content"] for m in body["history"]] == ["已经解决了，谢谢", "好的我扫了", "怎么扫码认证"]
    [task] = body["tasks"]
    assert (task["task_type"], task["status"], task["user_name"]) == ("scan_qr", "completed", "用户甲")
    # 用户甲 answered at 8 and nobody followed up within 3 minutes; their "solved" closed it
    assert [(a["alert_type"], a["status"], a["cancel_reason"]) for a in body["alerts"]] == [
        ("task_not_followed_up", "cancelled", "problem_solved")
    ]
    [alert] = theirs.json()["alerts"]
    assert (alert["alert_type"], alert["user_name"]) == ("user_complaint", "用户乙")
    assert missing.status_code == 404 and "没来过" in missing.json()["detail"]


def test_a_session_id_with_a_slash_and_the_name_as_the_last_segment(settings: Settings) -> None:
    assert settings.database_url
    insert_customers(settings.database_url, customer_event("小王", session_id="group:A/B群"))
    with console(settings) as client:
        r = client.get(f"{PATH}/{quote('group:A/B群', safe='')}/{quote('小王')}", headers=bearer(TOKEN))
    assert r.status_code == 200, r.text
    assert r.json()["profile"]["session_id"] == "group:A/B群"


@pytest.mark.parametrize(
    "params",
    [{"band": "sick"}, {"order": "name"}, {"limit": 0}, {"limit": 501}, {"q": "a\x00b"}, {"offset": -1}],
)
def test_bad_filters_are_422(settings: Settings, params: dict[str, Any]) -> None:
    with console(settings) as client:
        r = client.get(PATH, params=params, headers=bearer(TOKEN))
    assert r.status_code == 422, r.text


def test_a_search_is_literal_text_not_a_pattern(settings: Settings) -> None:
    assert settings.database_url
    insert_customers(settings.database_url, customer_event("小王"), customer_event("100%_满意"))
    with console(settings) as client:
        literal = client.get(PATH, params={"q": "%_"}, headers=bearer(TOKEN)).json()
        everyone = client.get(PATH, params={"q": ""}, headers=bearer(TOKEN)).json()
    assert [c["user_name"] for c in literal["items"]] == ["100%_满意"]
    assert everyone["total"] == 2


def test_every_role_and_the_service_token_may_read_and_nobody_else(
    settings: Settings, users: dict[str, str]
) -> None:
    with console(settings) as client:
        answers = {role: client.get(PATH, headers=login(client, users[role])).status_code for role in ROLES}
        answers["service"] = client.get(PATH, headers=bearer(TOKEN)).status_code
        anonymous = client.get(PATH).status_code
    assert answers == dict.fromkeys([*ROLES, "service"], 200) and anonymous == 401
