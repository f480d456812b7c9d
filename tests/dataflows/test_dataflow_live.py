"""The live dataflow process on the real broker and database: killed mid-stream and restarted, it
loses and duplicates nothing in Postgres."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from tests.support import consume_all, produce, spawn_dataflow, stop, wait_until
from worktool.models import raw_record_key

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def records(n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        body = {
            "spoken": f"消息{i}",
            "rawSpoken": f"消息{i}",
            "receivedName": f"用户{i % 7}",
            "groupName": f"群{i % 5}",
            "groupRemark": "",
            "roomType": 1,
            "atMe": False,
            "textType": 1,
        }
        at = (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        for robot, delay in (("wt_monitor", 0.0), ("wt_day", 0.2)):  # every message reported twice
            stamp = (
                at if not delay else (T0 + timedelta(seconds=i + delay)).isoformat().replace("+00:00", "Z")
            )
            rec = {"kind": "message", "robot_id": robot, "received_at": stamp, "body": body}
            out.append((raw_record_key("message", robot, body), orjson.dumps(rec)))
    return out


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from session_messages").fetchone()[0]


def test_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
    settings_factory, unique_topics, tmp_path
):
    settings = settings_factory(**unique_topics(), snapshot_interval_s=1)
    n = 400
    data = records(n)
    flow = spawn_dataflow(settings, tmp_path / "dataflow.log")

    def feed():  # keep producing while the process is killed and restarted
        for i in range(0, len(data), 40):
            produce(settings.kafka_bootstrap_servers, settings.topic_raw, data[i : i + 40])
            time.sleep(0.25)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait_until(lambda: count_rows(settings.database_url) >= 60, 90, what="first rows")
        flow.send_signal(signal.SIGKILL)  # no clean shutdown, no final snapshot
        flow.wait(10)
        flow = spawn_dataflow(settings, tmp_path / "dataflow.log")
        feeder.join()
        wait_until(lambda: count_rows(settings.database_url) >= n, 90, what=f"{n} rows")
        time.sleep(2)  # anything re-emitted after resume has landed by now
        with psycopg.connect(settings.database_url) as conn:
            assert conn.execute(
                "select count(*), count(distinct message_id) from session_messages"
            ).fetchone() == (n, n)
            per_session = conn.execute(
                "select session_id, message_count from sessions order by session_id"
            ).fetchall()
        assert per_session == [(f"group:群{g}", n // 5) for g in range(5)]
        classified = [
            r
            for r in consume_all(settings.kafka_bootstrap_servers, settings.topic_monitor)
            if r["value"]["event"] == "message_classified"
        ]
        # The monitor topic is at-least-once: every message is there, re-emits after the kill allowed.
        assert len({r["value"]["data"]["message_id"] for r in classified}) == n
    finally:
        feeder.join()
        stop(flow)
