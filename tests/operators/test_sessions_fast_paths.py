"""The sessions step's cheaper paths give what the plain code gave: the reply delay drawn with the C
generator directly, the unchecked command cause, the alert's snapshot and where it is."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from operators.alerts import Alert, AlertRules, command_cause
from operators.replies import ReplyPlanner
from worktool.config import BusinessConfig
from worktool.events import AlertSnapshot, EscalationStep
from worktool.models import CommandCause

text = st.text(max_size=12)
maybe_text = st.none() | text


_PLANNER = ReplyPlanner(BusinessConfig())  # built once: the catalogue takes most of a second


def _delay_before(planner: ReplyPlanner, message_id: str, scenario: str) -> float:
    """ReplyPlanner.delay as it was: random.Random seeded with the digest, then uniform()."""
    low, high = planner.c.delays[scenario]
    seed = int.from_bytes(
        hashlib.blake2b(f"{message_id}\x1f{scenario}".encode(), digest_size=8).digest(), "big"
    )
    return round(random.Random(seed).uniform(low, high), 3)


@given(message_ids=st.lists(text, min_size=1, max_size=20))
def test_delay_is_the_seeded_uniform_draw(message_ids: list[str]) -> None:
    planner = _PLANNER
    for message_id in message_ids:
        for scenario in planner.c.delays:
            assert planner.delay(message_id, scenario) == _delay_before(planner, message_id, scenario)


@given(event=text, message_id=maybe_text, alert_id=maybe_text)
def test_command_cause_serializes_as_the_validated_model(
    event: str, message_id: str | None, alert_id: str | None
) -> None:
    validated = CommandCause(event=event, message_id=message_id, alert_id=alert_id)
    unchecked = command_cause(event, message_id, alert_id)
    assert unchecked == validated
    assert unchecked.model_dump_json() == validated.model_dump_json()
    # as the code before built it: only the fields it had
    kept: dict[str, str] = {"event": event}
    if message_id is not None:
        kept["message_id"] = message_id
    if alert_id is not None:
        kept["alert_id"] = alert_id
    assert unchecked.model_dump_json() == CommandCause(**kept).model_dump_json()


def _alert(group: str | None, robot: str | None, user: str | None, history: int) -> Alert:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    alert = Alert("al_1", "user_complaint", "k", "s", 1, at, at, "s", user, group, robot)
    alert.escalation_history = [(at + timedelta(minutes=i), i + 1, i + 2, "repeat") for i in range(history)]
    return alert


@given(group=maybe_text, robot=maybe_text, user=maybe_text, history=st.integers(0, 3))
def test_alert_model_and_where(group: str | None, robot: str | None, user: str | None, history: int) -> None:
    alert = _alert(group, robot, user, history)
    parts = [alert.group_name or (alert.robot_id and f"机器人{alert.robot_id}") or "", alert.user_name or ""]
    assert AlertRules._where(alert) == " ".join(p for p in parts if p)
    validated = AlertSnapshot(
        alert_id=alert.alert_id, alert_type=alert.alert_type, alert_key=alert.alert_key,
        session_id=alert.session_id, user_name=alert.user_name, group_name=alert.group_name,
        robot_id=alert.robot_id, level=alert.level, status=alert.status,
        escalation_count=len(alert.escalation_history),
        escalation_history=[
            EscalationStep(at=a, from_level=f, to_level=t, by=b) for a, f, t, b in alert.escalation_history
        ],
        cancel_reason=alert.cancel_reason, cancelled_at=alert.cancelled_at, cancelled_by=alert.cancelled_by,
        raised_at=alert.raised_at, last_triggered_at=alert.last_triggered_at, trigger_count=alert.trigger_count,
        message_id=alert.message_id, message_content=alert.message_content,
        parent_alert_id=alert.parent_alert_id, notified_at=alert.notified_at, version=alert.version,
    )  # fmt: skip
    assert alert.model().model_dump_json() == validated.model_dump_json()
    assert AlertRules.find({"k": alert}, "al_1") is alert
    assert AlertRules.find({"k": alert}, "al_2") is None
