"""A user question in a group, end to end through the real processes: gateway -> dataflow (reply decided,
delayed by the event-time clock) -> worktool.commands -> dispatcher -> one correct sendRawMessage on a fake
WorkTool server -> WorkTool's result callback -> the command `completed` in robot_commands and on the
monitor topic."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from infra.embedded import free_port
from tests.fakes.worktool_server import FakeWorkTool
from tests.support import answers, consume_all, spawn, spawn_dataflow, stop, wait_until

pytestmark = pytest.mark.integration

RULES = """
robots:
  - {robot_id: wt_monitor, name: 监控助手, role: monitor}
  - {robot_id: wt_day, name: 运营助理小A, role: reply_day}
  - {robot_id: wt_night, name: 运营助理小夜, role: reply_night}
staff: [售后-小李]
replies:
  day_starts: "00:00"
  night_starts: "23:59"
"""


def test_a_question_is_answered_once_through_the_right_robot_after_its_delay(
    settings_factory, unique_topics, tmp_path: Path
) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(RULES, encoding="utf-8")
    http_port = free_port()
    with FakeWorkTool(callback_url=f"http://127.0.0.1:{http_port}/worktool/callback/result") as worktool:
        settings = settings_factory(
            **unique_topics(), config_path=config, http_port=http_port, api_base_url=worktool.url,
            dispatcher_metrics_port=0,
        )  # fmt: skip
        procs = [
            spawn_dataflow(settings, tmp_path / "dataflow.log"),
            spawn([sys.executable, "-m", "commands.cli", "gateway"], settings, tmp_path / "gateway.log"),
            spawn(
                [sys.executable, "-m", "commands.cli", "dispatcher"], settings, tmp_path / "dispatcher.log"
            ),
        ]
        base = f"http://127.0.0.1:{http_port}"
        try:
            wait_until(lambda: answers(f"{base}/healthz"), 90, what="/healthz 200")
            question = {"spoken": "佣金什么时候结算？", "rawSpoken": "佣金什么时候结算？", "receivedName": "用户甲-138****0000",
                        "groupName": "视频号运营A群", "groupRemark": "A群", "roomType": 1, "atMe": "false", "textType": 1}  # fmt: skip
            # The monitor robot reports it first; the day robot's own copy tells us it sits in the group.
            for robot in ("wt_monitor", "wt_day"):
                r = httpx.post(f"{base}/worktool/callback/message", params={"robotId": robot}, json=question)
                assert r.status_code == 200

            try:
                [send] = worktool.wait_for_requests(1, timeout=120)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{_diagnosis(settings, tmp_path)}") from None
            assert send.is_send and send.robot_id == "wt_day"
            assert send.body["socketType"] == 2
            [item] = send.items
            assert item["type"] == 203 and item["titleList"] == ["A群"]  # the group's remark
            assert item["atList"] == ["用户甲-138****0000"]
            assert item["receivedContent"].startswith("@用户甲-138****0000 ")

            def command() -> tuple | None:
                with psycopg.connect(settings.database_url) as conn:
                    return conn.execute(
                        "SELECT status, robot_id, worktool_message_id, due_at, cause_event FROM robot_commands"
                    ).fetchone()

            status = wait_until(lambda: (c := command()) and c[0] == "completed" and c, 60, what="completed")
            assert status[1:3] == ("wt_day", send.message_id) and status[4] == "reply_scheduled"
            events = [
                r["value"] for r in consume_all(settings.kafka_bootstrap_servers, settings.topic_monitor)
            ]
            [scheduled] = [e for e in events if e["event"] == "reply_scheduled"]
            assert 2 <= scheduled["data"]["delay_s"] <= 8  # the day shift's operation range
            due = datetime.fromisoformat(scheduled["data"]["due_time"].replace("Z", "+00:00")).timestamp()
            assert send.wall >= due  # never sent before its delay
            assert [e["data"]["status"] for e in events if e["event"] == "command_result"] == ["completed"]
            assert len(worktool.sends()) == 1  # once, although two robots reported the question
        finally:
            for proc in procs:
                stop(proc)


def _diagnosis(settings, tmp_path: Path) -> str:
    """What the flow did with the question (its events) and the processes' last words."""
    events = consume_all(settings.kafka_bootstrap_servers, settings.topic_monitor)
    names = [(e["value"]["event"], e["value"].get("data", {}).get("message_type")) for e in events]
    tails = {log.name: log.read_text(errors="replace")[-3000:] for log in sorted(tmp_path.glob("*.log"))}
    return f"monitor events: {names}\n" + "\n".join(f"--- {k}\n{v}" for k, v in tails.items())
