"""The alerts' cancellation table and routing by level (operators/alerts.py), on their own: which
condition closes which open alerts with which reason (docs/rules.md §4, the five cancellations), and who
hears of an alert at each level."""

from __future__ import annotations

from typing import Any

import pytest

from operators.alerts import CANCELLATIONS, Alert, AlertRules, Trigger
from operators.timers import ShardClock
from tests.operators.test_session_rules import CONFIG, SID, at, events


def raise_(rules: AlertRules, alerts: dict[str, Alert], clock: ShardClock, alert_type: str, user: str,
           minutes: float, subject: str = SID) -> Alert:  # fmt: skip
    rules.trigger(
        alerts, clock, Trigger(alert_type, subject, at(minutes), user_name=user, session_id=subject)
    )
    return next(a for a in alerts.values() if a.alert_type == alert_type and a.user_name == user)


@pytest.fixture
def setup() -> tuple[AlertRules, ShardClock, dict[str, Alert]]:
    return AlertRules(CONFIG.alerts, "wt_notify"), ShardClock(), {}


def test_the_table_names_the_five_reasons() -> None:
    reasons = {c.reason for c in CANCELLATIONS.values()}
    assert reasons == {"staff_intervened", "user_satisfied", "problem_solved", "expired", "manual"}


def test_a_subject_wide_condition_closes_every_open_alert_raised_before_it(setup) -> None:
    rules, clock, alerts = setup
    a = raise_(rules, alerts, clock, "user_complaint", "用户甲", 0)
    b = raise_(rules, alerts, clock, "operator_harsh", "运营-老周", 1)
    c = raise_(rules, alerts, clock, "private_operation", "用户乙", 2)  # raised at the condition's time
    out = rules.cancel_on("staff_message", alerts, clock, at(2), by="售后-小李")
    assert {e.data.alert_id for e in events(out, "alert_cancelled")} == {a.alert_id, b.alert_id}
    assert (a.cancel_reason, a.cancelled_by, c.status) == ("staff_intervened", "售后-小李", "open")
    assert rules.cancel_on("staff_message", alerts, clock, at(3)) != []  # c now; a and b stay closed
    assert rules.cancel_on("staff_message", alerts, clock, at(4)) == []


def test_a_user_condition_closes_only_that_users_alerts(setup) -> None:
    rules, clock, alerts = setup
    mine = raise_(rules, alerts, clock, "user_complaint", "用户甲", 0)
    theirs = raise_(rules, alerts, clock, "user_complaint", "用户乙", 0)
    rules.cancel_on("user_satisfied", alerts, clock, at(1), user_name="用户甲")
    assert (mine.status, mine.cancel_reason, theirs.status) == ("cancelled", "user_satisfied", "open")
    rules.cancel_on("user_says_solved", alerts, clock, at(2), user_name="用户乙")
    assert theirs.cancel_reason == "problem_solved"


def test_robot_online_closes_robot_fault_only(setup) -> None:
    rules, clock, alerts = setup
    fault = raise_(rules, alerts, clock, "robot_fault", "", 0, subject="robot:wt_day")
    other = raise_(rules, alerts, clock, "staff_no_reply", "用户甲", 0, subject="robot:wt_day")
    rules.cancel_on("robot_online", alerts, clock, at(1))
    assert (fault.cancel_reason, other.status) == ("problem_solved", "open")


def test_conditions_naming_one_alert_go_through_cancel_one(setup) -> None:
    rules, clock, alerts = setup
    alert = raise_(rules, alerts, clock, "user_complaint", "用户甲", 0)
    with pytest.raises(ValueError, match="cancel_one"):
        rules.cancel_on("operator", alerts, clock, at(1))
    [cancelled] = events(rules.cancel_one("operator", alert, clock, at(1), by="admin"))
    assert (cancelled.data.reason, alert.cancelled_by) == ("manual", "admin")


@pytest.mark.parametrize(("level", "channels"), [(1, ["wecom"]), (2, ["wecom"]), (3, ["wecom", "phone"]),
                                                 (4, ["wecom", "phone", "sms"])])  # fmt: skip
def test_notifications_are_routed_by_level_to_the_configured_targets(
    setup, level: int, channels: list[str]
) -> None:
    rules, clock, alerts = setup
    start = {"low_satisfaction": 3, "user_complaint": 4, "operator_harsh": 2, "staff_no_reply": 1}
    alert_type = next(t for t, v in start.items() if v == level)
    out: list[Any] = rules.trigger(
        alerts, clock, Trigger(alert_type, SID, at(0), user_name="用户甲", session_id=SID)
    )
    sent = [(e.data.channel, e.data.target) for e in events(out, "command_created")]
    targets = {"wecom": "售后工作群", "phone": "13800000000", "sms": "13900000000"}
    assert sent == [(c, targets[c]) for c in channels]
    assert clock.pending(SID) == (2 if level >= 2 else 1)  # the expiry timer, and a reminder from level 2
