"""The event-time rules live, through the real gateway and dataflow processes, with minutes shrunk to
seconds: the live monitor events equal a replay of the archive of the same run; an alert pending when the
dataflow is killed (SIGKILL) still expires afterwards, exactly once."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from dataflows.replay import dump_topics, replay_archive
from tests.support import answers, consume_all, spawn, spawn_dataflow, stop, wait_until
from worktool.models import to_utc

pytestmark = pytest.mark.integration

# Minutes of the business rules, shrunk so that a test sees windows close, waits expire, alerts escalate
# and expire within seconds. Every timer is at least 3 s away from the records of its session in the
# script below, more than the allowed lateness, so a loaded machine cannot reorder them.
FAST_RULES = """
robots:
  - {robot_id: wt_monitor, name: 监控助手, role: monitor}
  - {robot_id: wt_notify, name: 通知助手, role: notify}
  - {robot_id: wt_day, name: 运营助理小A, role: reply_day}
  - {robot_id: wt_night, name: 运营助理小夜, role: reply_night}
staff: [售后-小李]
operators: [运营-老周]
replies:
  day_starts: "00:00"
  night_starts: "23:59"
staff_window: {minutes: 0.1}
intervention: {user_waiting_minutes: 0.15}
alerts:
  escalation_minutes: [0.2, 0.3, 0.4]
  expiry_minutes: 0.5
  user_not_cooperating_minutes: 0.2
  task_not_followed_up_minutes: 0.1
  notifications: {reminder_minutes: 0.1, min_interval_minutes: 0}
commands: {result_timeout_s: 5, lookup_interval_s: 3, lookups: 1}
"""
LATENESS_S = 2.0


def body(text: str, sender: str, group: str = "A群", **extra) -> dict:
    return {"spoken": text, "rawSpoken": text, "receivedName": sender, "groupName": group, "groupRemark": "",
            "roomType": 1, "atMe": False, "textType": 1, **extra}  # fmt: skip


@pytest.fixture
def live(settings_factory, unique_topics, tmp_path: Path):
    config = tmp_path / "rules.yaml"
    config.write_text(FAST_RULES, encoding="utf-8")
    settings = settings_factory(
        **unique_topics(), config_path=config, allowed_lateness_s=LATENESS_S, snapshot_interval_s=1
    )
    procs: dict[str, object] = {}

    def start_dataflow() -> None:
        procs["dataflow"] = spawn_dataflow(settings, tmp_path / "dataflow.log")

    start_dataflow()
    procs["gateway"] = spawn(
        [sys.executable, "-m", "commands.cli", "gateway"], settings, tmp_path / "gateway.log"
    )
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), 90, what="/healthz 200")
        yield settings, base, procs, start_dataflow
    finally:
        for proc in procs.values():
            stop(proc)  # type: ignore[arg-type]


def post(base: str, kind: str, robot: str, payload: dict) -> None:
    r = httpx.post(f"{base}/worktool/callback/{kind}", params={"robotId": robot}, json=payload, timeout=5)
    assert r.status_code == 200, r.text


def monitor(settings) -> list[dict]:
    return [r["value"] for r in consume_all(settings.kafka_bootstrap_servers, settings.topic_monitor)]


def canonical(events: list[dict]) -> list[bytes]:
    return sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in events)


def test_live_events_equal_the_replay_of_the_archive(live, tmp_path: Path) -> None:
    settings, base, _procs, _start = live
    script = [
        ("message", "wt_day", body("大家好，我是售后小李", "售后-小李")),  # staff window opens (6 s)
        ("message", "wt_monitor", body("好的，我的号一直登录不上", "用户甲")),  # waits while staff handle
        ("message", "wt_day", body("我要投诉你们，说好的一天300到500呢", "用户乙", group="B群")),
        ("message", "wt_day", body("马上给我配合扫码！！！别废话", "运营-老周", group="C群")),
        ("offline", "wt_night", {"status": 6}),
    ]
    for kind, robot, payload in script:
        post(base, kind, robot, payload)
        time.sleep(0.3)
    time.sleep(4)
    post(
        base, "message", "wt_day", body("马上给我配合扫码！！！别废话", "运营-老周", group="C群")
    )  # escalates
    time.sleep(14)  # window closes, the wait expires (staff_no_reply), reminders fire
    post(
        base, "message", "wt_day", body("非常抱歉，我马上处理", "售后-小李", group="B群")
    )  # cancels B's alerts
    post(base, "online", "wt_night", {"status": 5})
    time.sleep(36)  # alerts still open expire (30 s after their last trigger)

    events = wait_until(
        lambda: (e := monitor(settings)) and sum(x["event"] == "alert_cancelled" for x in e) >= 4 and e,
        60, what="alerts cancelled, live",
    )  # fmt: skip
    kinds = Counter(e["event"] for e in events)
    for name in ("staff_window_opened", "staff_window_closed", "intervention_needed", "alert_raised",
                 "alert_escalated", "alert_cancelled", "reply_scheduled", "command_created"):  # fmt: skip
        assert kinds[name], (name, kinds)
    reasons = {e["data"]["reason"] for e in events if e["event"] == "alert_cancelled"}
    assert {"staff_intervened", "expired", "problem_solved"} <= reasons

    archive = tmp_path / "archive.jsonl"
    with archive.open("wb") as f:
        dump_topics(settings.kafka_bootstrap_servers, [settings.topic_raw, settings.topic_control], f)
    until = max(to_utc(e["event_time"]) for e in events)
    out = io.BytesIO()
    replay_archive(archive, out, settings=settings, until=until)
    replayed = [orjson.loads(line) for line in out.getvalue().splitlines() if line]
    assert canonical(replayed) == canonical(events)


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_an_alert_pending_at_a_kill_still_expires_exactly_once(live) -> None:
    settings, base, procs, start_dataflow = live
    post(base, "message", "wt_day", body("我把橱窗里的商品删了", "用户甲", group="D群"))
    wait_until(lambda: rows(settings.database_url, "SELECT status FROM alert_history"), 30, what="alert row")
    time.sleep(3)  # a snapshot (every second) holds the open alert and its expiry timer
    os.kill(procs["dataflow"].pid, signal.SIGKILL)  # type: ignore[attr-defined]
    procs["dataflow"].wait(10)  # type: ignore[attr-defined]
    start_dataflow()

    wait_until(
        lambda: rows(settings.database_url, "SELECT cancel_reason FROM alert_history") == [("expired",)],
        90, what="the alert expired after the restart",
    )  # fmt: skip
    time.sleep(3)
    cancelled = [e for e in monitor(settings) if e["event"] == "alert_cancelled"]
    assert [e["data"]["reason"] for e in cancelled] == ["expired"]
    [(status, version)] = rows(settings.database_url, "SELECT status, version FROM alert_history")
    assert status == "cancelled" and version >= 2
