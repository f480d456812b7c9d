"""Webhook -> Kafka -> dataflow -> Postgres row and monitor event, with the real gateway and dataflow
processes on the embedded broker, database and Redis."""

from __future__ import annotations

import sys

import httpx
import psycopg
import pytest

from tests.support import GROUP_MESSAGE, answers, consume_all, spawn, spawn_dataflow, stop, wait_until

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
