"""Webhook -> Kafka -> dataflow -> Postgres row and monitor event, with the real gateway and dataflow
processes on the embedded broker, database and Redis."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from tests.support import (
    GROUP_MESSAGE,
    answers,
    consume_all,
    produce,
    spawn,
    spawn_dataflow,
    stop,
    wait_until,
)
from worktool.models import INTEGER, SMALLINT, RawRecord, raw_record_key

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(settings_factory, unique_topics, tmp_path):
    settings = settings_factory(**unique_topics())
    flow = spawn_dataflow(settings, tmp_path / "dataflow.log")
    gw = spawn([sys.executable, "-m", "commands.cli", "gateway"], settings, tmp_path / "gateway.log")
    base = f"http://127.0.0.1:{settings.http_port}"

    try:
        wait_until(lambda: answers(f"{base}/healthz"), 90, what="/healthz 200")
        yield settings, base
    finally:
        stop(gw)
        stop(flow)


def rows(url: str, sql: str, *args):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def test_webhooks_become_rows_and_monitor_events(stack):
    settings, base = stack
    url = f"{base}/worktool/callback/message"
    body = GROUP_MESSAGE
    ok = {"code": 0, "message": "success", "data": {}}
    # The same message reported by the monitor robot (JSON) and the day robot (form, loose types).
    assert httpx.post(url, params={"robotId": "wt_monitor"}, json=body).json() == ok
    form = {**body, "roomType": "1", "atMe": "true", "textType": "1"}
    assert httpx.post(url, params={"robotId": "wt_day"}, data=form).json() == ok
    private = {
        "spoken": "你好，我想退出合作",
        "rawSpoken": "你好，我想退出合作",
        "receivedName": "用户乙",
        "groupName": "",
        "groupRemark": "",
        "roomType": "2",
        "atMe": "false",
        "textType": "1",
    }
    assert httpx.post(url, params={"robotId": "wt_day"}, data=private).json() == ok
    bad = httpx.post(
        url, params={"robotId": "wt_day"}, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= bad.status_code < 500

    got = wait_until(
        lambda: (
            rows(
                settings.database_url,
                "select session_id, sender_name, at_me, room_type, content from session_messages"
                " order by session_id",
            )
            if len(rows(settings.database_url, "select 1 from session_messages")) >= 2
            else None
        ),
        60,
        what="2 rows",
    )
    assert got == [
        ("group:视频号运营A群", "用户甲-138****0000", True, 1, body["spoken"]),
        ("private:wt_day:用户乙", "用户乙", False, 2, private["spoken"]),
    ]
    robots = rows(
        settings.database_url,
        "select robot_id from session_robots where session_id = %s order by 1",
        "group:视频号运营A群",
    )
    assert robots == [("wt_day",), ("wt_monitor",)]

    events = [r["value"] for r in consume_all(settings.kafka_bootstrap_servers, settings.topic_monitor)]
    classified = [e for e in events if e["event"] == "message_classified"]
    assert len({e["data"]["message_id"] for e in classified}) == 2
    first = next(e for e in classified if e["session_id"] == "group:视频号运营A群")
    assert set(first) == {"schema_version", "event", "event_time", "session_id", "robot_id", "data"}
    assert {"message_id", "sender_type", "message_type", "confidence"} <= set(first["data"])
    assert first["event_time"].endswith("Z")
    dlq = [r["value"] for r in consume_all(settings.kafka_bootstrap_servers, settings.topic_dlq)]
    assert any(d["stage"] == "gateway" and "{not json" in d["raw"] for d in dlq)


def test_extreme_accepted_numbers_are_stored_and_one_past_is_refused(stack):
    """Issue 13, finding 4, end to end: the extreme value of every numeric callback field goes webhook
    -> dataflow -> PostgreSQL without a DLQ record, and the commands complete; one past a limit is a 422
    with a DLQ record at the gateway (errorCode 2**31 used to be answered 200, then dead-lettered by the
    Postgres sink, its command left `sent`)."""
    settings, base = stack
    int_min, int_max = INTEGER.min, INTEGER.max
    robot = "wt_limits"
    ok = {"code": 0, "message": "success", "data": {}}
    commands = {"cmd-max": "m-1", "cmd-min": "m-2", "cmd-ok": "m-3"}
    # What the dispatcher writes when WorkTool accepted a send (and one whose submission failed).
    accepted = [
        RawRecord(kind="accepted", robot_id=robot, received_at=datetime.now(UTC),
                  body={"messageId": message_id, "commandIds": [command], "errorCode": 0})
        for command, message_id in commands.items()
    ] + [RawRecord(kind="accepted", robot_id=robot, received_at=datetime.now(UTC),
                   body={"messageId": "", "commandIds": ["cmd-refused"], "errorCode": int_min})]  # fmt: skip
    produce(settings.kafka_bootstrap_servers, settings.topic_raw,
            [(raw_record_key(r.kind, r.robot_id, r.body), r.to_json()) for r in accepted])  # fmt: skip
    sent = "select count(*) from robot_commands where status = 'sent'"
    wait_until(lambda: rows(settings.database_url, sent)[0][0] == 3, 60, what="3 commands sent")

    results = [
        {"messageId": "m-1", "errorCode": int_max, "runTime": 2**63 - 1, "type": -(2**63),
         "timeCost": 1.7976931348623157e308},
        {"messageId": "m-2", "errorCode": str(int_min), "runTime": str(-(2**63)), "type": str(2**63 - 1),
         "timeCost": -1.7976931348623157e308},
        {"messageId": "m-3", "errorCode": 0, "runTime": 0, "type": 203, "timeCost": 0.0},
    ]  # fmt: skip
    for body in results:
        r = httpx.post(f"{base}/worktool/callback/result", params={"robotId": robot}, json=body)
        assert r.json() == ok, r.text
    qr = {"messageId": "m-qr", "errorCode": int_max, "groupName": "A群", "qrCode": "https://q"}
    assert httpx.post(f"{base}/worktool/callback/qrcode", params={"robotId": robot}, json=qr).json() == ok
    messages = [
        {**GROUP_MESSAGE, "spoken": f"极值 {room} {text}", "roomType": room, "textType": text,
         "receivedName": f"用户{room}{text}"}
        for room in (1, 2, 3, 4) for text in (0, SMALLINT.max)
    ]  # fmt: skip
    for body in messages:
        r = httpx.post(f"{base}/worktool/callback/message", params={"robotId": robot}, json=body)
        assert r.json() == ok, r.text
    # One past the limits: refused at once, kept in the DLQ.
    for body in (
        {"messageId": "m-4", "errorCode": int_max + 1},
        {"messageId": "m-5", "errorCode": int_min - 1},
    ):
        assert (
            httpx.post(f"{base}/worktool/callback/result", params={"robotId": robot}, json=body).status_code
            == 422
        )
    too_big = {**GROUP_MESSAGE, "textType": SMALLINT.max + 1}
    r = httpx.post(f"{base}/worktool/callback/message", params={"robotId": robot}, json=too_big)
    assert r.status_code == 422

    done = "select command_id, status, error_code from robot_commands order by command_id"
    want = [("cmd-max", "failed", int_max), ("cmd-min", "failed", int_min), ("cmd-ok", "completed", 0),
            ("cmd-refused", "failed", int_min)]  # fmt: skip
    wait_until(lambda: rows(settings.database_url, done) == want, 60, what=f"commands {want}")
    stored = "select room_type, text_type from session_messages where content like '极值 %%' order by 1, 2"
    expected = sorted({(m["roomType"], m["textType"]) for m in messages})
    wait_until(lambda: rows(settings.database_url, stored) == expected, 60, what="the extreme messages")
    dlq = [r["value"] for r in consume_all(settings.kafka_bootstrap_servers, settings.topic_dlq)]
    assert [d["stage"] for d in dlq] == ["gateway"] * 3, dlq  # nothing dead-lettered downstream
