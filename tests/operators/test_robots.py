"""The robots part of the sessions step (operators/robots.py), on its own: sightings, a robot's
online/offline records, accepted records and result callbacks handed to the command tracker, and the
robot_fault alert."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from operators.alerts import Alert
from operators.commands import AwaitedResult, RobotLedger
from operators.sessions import SessionPolicy
from operators.shard import RobotRecord
from operators.timers import ShardClock
from tests.operators.test_session_rules import CONFIG, at, events
from worktool.models import AcceptedBody, ResultCallback

KEY = "robot:wt_day"


@pytest.fixture
def parts() -> tuple[Any, ShardClock, RobotLedger, dict[str, Alert]]:
    return SessionPolicy(CONFIG).robots, ShardClock(), RobotLedger(), {}


def test_a_robot_joins_a_conversation_once() -> None:
    robots: set[str] = set()
    rules = SessionPolicy(CONFIG).robots
    [joined] = rules.seen(robots, "group:A群", "wt_day", at(0), "A群", "A群")
    assert joined.event == "robot_joined_session" and joined.robot_id == "wt_day"
    assert rules.seen(robots, "group:A群", "wt_day", at(1), None, None) == [] and robots == {"wt_day"}


def test_offline_raises_robot_fault_and_online_cancels_it(parts) -> None:
    rules, clock, ledger, alerts = parts
    out = rules.on_record(ledger, alerts, clock, KEY, RobotRecord("offline", "wt_day", at(0)))
    assert [e.event for e in events(out)][:2] == ["robot_health", "robot_status"]
    assert events(out, "alert_raised")[0].data.alert_type == "robot_fault" and not ledger.online
    out = rules.on_record(ledger, alerts, clock, KEY, RobotRecord("online", "wt_day", at(5)))
    [cancelled] = events(out, "alert_cancelled")
    assert cancelled.data.reason == "problem_solved" and ledger.online


def test_an_accepted_command_waits_for_its_result_and_a_callback_ends_it(parts) -> None:
    rules, clock, ledger, alerts = parts
    accepted = AcceptedBody(messageId="w1", commandIds=["c1"], errorCode=0)
    out = rules.on_record(ledger, alerts, clock, KEY, RobotRecord("accepted", "wt_day", at(0), accepted))
    assert [e.event for e in events(out)] == ["command_callback", "command_sent"]
    assert ledger.waiting == {"c1": AwaitedResult("w1", ledger.waiting["c1"].timer)}
    result = ResultCallback(messageId="w1", errorCode=0, errorReason="")
    out = rules.on_record(ledger, alerts, clock, KEY, RobotRecord("result", "wt_day", at(0.5), result))
    assert [e.event for e in events(out)] == ["command_callback", "command_result"]
    assert not ledger.waiting and not clock.pending(KEY)


def test_results_that_never_come_make_the_robot_critical_and_raise_robot_fault(parts) -> None:
    rules, clock, ledger, alerts = parts
    for i in range(4):
        accepted = AcceptedBody(messageId=f"w{i}", commandIds=[f"c{i}"], errorCode=0)
        rules.on_record(ledger, alerts, clock, KEY, RobotRecord("accepted", "wt_day", at(i), accepted))
    out: list[Any] = []
    while (timer := clock.next_due(at(0) + timedelta(days=1))) is not None:
        if timer.kind == "command_result_due":
            out += rules.result_due(ledger, alerts, clock, timer)
    assert len(events(out, "command_result")) == 4 and ledger.band == "critical"
    [fault] = events(out, "alert_raised")
    assert fault.data.alert_type == "robot_fault" and "健康分" in fault.data.alert.message_content
