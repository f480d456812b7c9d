"""Alerts (docs/rules.md §4): raise, escalate by repeat, re-notify, remind, cancel, expire. Pure: the
clock is passed in, every decision is stamped with the event time that caused it.

An alert belongs to a subject, the state key whose records can touch it: a session for the alerts of a
conversation, "robot:<id>" for robot_fault, "gateway:<boot id>" for pipeline_gap (operators/gaps.py). Within the subject, alerts are identified by their key
(alert_type, subject, user); the subject keeps the latest alert of each key, open or closed.

    trigger(key) at t, the key's alert open:
        t - previous trigger <= escalation window of its level (30/60/90 min) and level < 4
            -> escalated one level, notified at the new level
        otherwise -> re-notified at the same level (at most once per `min_interval_minutes`)
    trigger(key), no open alert -> a new alert at the type's start level (linked to the previous alert
        of the key, if any, by parent_alert_id: cancelled alerts stay in the history)
    an open alert not triggered again for `expiry_minutes` (24 h) -> cancelled "expired"
    cancel(reason): staff_intervened, user_satisfied, problem_solved, manual (and expired above); which
        condition closes which alerts is the table CANCELLATIONS

Three parts, in the spirit of Alertmanager's dispatch / inhibition / silences:

- lifecycle (`AlertRules.trigger`, escalation, expiry): what an alert is and how it moves;
- cancellation (`CANCELLATIONS`): which event or condition closes which open alerts, with which reason,
  as one table; the steps name the condition met (`cancel_on`), the table says what it closes;
- routing (`ROUTES`): who hears of an alert at each level. 1 a WeCom text through the notify robot to
  the staff target; 2 adds a reminder `reminder_minutes` later if the alert is still open; 3 adds phone
  calls; 4 adds SMS; the targets come from `alerts.notifications`. Each is a CommandRecord (written to
  worktool.commands for the dispatcher) plus a `command_created` event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Literal, NamedTuple

from operators.timers import ShardClock, Timer
from worktool.config import AlertConfig
from worktool.events import (
    AlertCancelled,
    AlertEscalated,
    AlertRaised,
    AlertRetriggered,
    AlertSnapshot,
    CommandCreated,
    EscalationStep,
    MonitorEvent,
    construct,
    construct_from,
)
from worktool.models import CommandCause, CommandRecord, Message, iso

OPEN = ("open", "escalated")
LEVEL_NAMES = {1: "信息", 2: "警告", 3: "严重", 4: "紧急"}
TYPE_NAMES = {
    "user_complaint": "用户投诉",
    "staff_no_reply": "售后未回复",
    "user_not_cooperating": "用户未配合",
    "task_not_followed_up": "任务未跟进",
    "task_unfinished": "售后任务超时未完成",
    "low_satisfaction": "用户满意度低",
    "operator_harsh": "运营语气强硬",
    "private_operation": "用户私自操作",
    "robot_fault": "机器人故障",
    "pipeline_gap": "数据链路缺失",
    "no_staff_available": "售后任务无人可接",
}
CANCEL_NAMES = {
    "staff_intervened": "售后已介入",
    "user_satisfied": "用户已满意",
    "problem_solved": "问题已解决",
    "expired": "超时自动取消",
    "manual": "人工取消",
}
EXPIRY, REMINDER = "alert_expiry", "alert_reminder"
Out = MonitorEvent | CommandRecord


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What one condition closes: the open alerts of the whole subject, of the user who spoke, or the one
    alert it names; of the listed types only (None: every type); always with the same reason."""

    reason: str
    scope: Literal["subject", "user", "alert"]
    types: frozenset[str] | None = None
    earlier_only: bool = True  # only alerts raised before the event (a message never closes its own)


# docs/rules.md §4, the five cancellation reasons, by the conditions that meet them. The steps say which
# condition an item met (`AlertRules.cancel_on`, `cancel_one`); this table alone says what that closes.
CANCELLATIONS: dict[str, Cancellation] = {
    # 1. a staff or assistant message in the session
    "staff_message": Cancellation("staff_intervened", "subject"),
    # 2. the user's message is positive, or their satisfaction recovered above the high mark
    "user_satisfied": Cancellation("user_satisfied", "user"),
    # 3. the user says it is solved; a [已解决] command; the robot back online; a pipeline gap filled
    "user_says_solved": Cancellation("problem_solved", "user"),
    "solved_command": Cancellation("problem_solved", "subject"),
    "task_completed": Cancellation("problem_solved", "user"),  # a task of theirs completed (console, staff)
    "robot_online": Cancellation("problem_solved", "subject", frozenset({"robot_fault"})),
    "gap_filled": Cancellation("problem_solved", "subject", frozenset({"pipeline_gap"}), earlier_only=False),
    # 4. the key did not trigger again for `expiry_minutes`
    "expiry": Cancellation("expired", "alert"),
    # 5. an operator's cancel_alert control record (a silence, applied once per request id)
    "operator": Cancellation("manual", "alert"),
}


class Reminder(NamedTuple):
    """The payload of a REMINDER timer (plain data: a tuple in the snapshot)."""

    alert_id: str
    level: int
    notified_at: datetime


# Who hears of an alert at each level (docs/rules.md §4): (channel, from level). The targets come from
# alerts.notifications (`AlertRules._targets`); from REMINDER_FROM_LEVEL on, a reminder while still open.
ROUTES = (("wecom", 1), ("phone", 3), ("sms", 4))
REMINDER_FROM_LEVEL = 2


def command_cause(event: str, message_id: str | None, alert_id: str | None) -> CommandCause:
    """A command's cause, unchecked (its values are ours): every field in the model's order, so it
    serializes as the validated model does; ~1 µs less than validating, for each of the ~43 k commands of
    the 100 k day."""
    return construct_from(CommandCause, {"event": event, "message_id": message_id, "alert_id": alert_id})


def _digest(*parts: str, size: int = 10) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=size).hexdigest()


@dataclass(slots=True)
class Alert:
    alert_id: str
    alert_type: str
    alert_key: str
    subject: str  # the state key: a session id, or robot:<id>
    level: int
    raised_at: datetime
    last_triggered_at: datetime
    session_id: str | None = None
    user_name: str | None = None
    group_name: str | None = None
    robot_id: str | None = None
    status: str = "open"
    escalation_history: list[tuple[datetime, int, int, str]] = field(default_factory=list)
    cancel_reason: str | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    trigger_count: int = 1
    message_id: str | None = None
    message_content: str | None = None
    parent_alert_id: str | None = None
    notified_at: datetime | None = None
    expiry_timer: int | None = None
    version: int = 1

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def model(self) -> AlertSnapshot:
        # A dict of every field, in the model's order, straight to construct_from (no keyword packing, no
        # defaults merged): built for every alert event (~32 k in the 100 k day).
        history = self.escalation_history
        return construct_from(AlertSnapshot, {
            "alert_id": self.alert_id,
            "alert_type": self.alert_type,
            "alert_key": self.alert_key,
            "session_id": self.session_id,
            "user_name": self.user_name,
            "group_name": self.group_name,
            "robot_id": self.robot_id,
            "level": self.level,
            "status": self.status,
            "escalation_count": len(history),
            "escalation_history": [
                construct(EscalationStep, at=a, from_level=f, to_level=t, by=b) for a, f, t, b in history
            ] if history else [],
            "cancel_reason": self.cancel_reason,
            "cancelled_at": self.cancelled_at,
            "cancelled_by": self.cancelled_by,
            "raised_at": self.raised_at,
            "last_triggered_at": self.last_triggered_at,
            "trigger_count": self.trigger_count,
            "message_id": self.message_id,
            "message_content": self.message_content,
            "parent_alert_id": self.parent_alert_id,
            "notified_at": self.notified_at,
            "version": self.version,
        })  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        data = dict(zip(_ALERT_FIELDS, _alert_values(self), strict=True))  # one C call for the fields
        data["escalation_history"] = list(self.escalation_history)  # a copy: the alert goes on
        return data

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Alert:
        return cls(**{**data, "escalation_history": [tuple(step) for step in data["escalation_history"]]})


_ALERT_FIELDS: tuple[str, ...] = Alert.__slots__  # type: ignore[attr-defined]
_alert_values = attrgetter(*_ALERT_FIELDS)


@dataclass(frozen=True, slots=True)
class Trigger:
    """What raised or repeated an alert."""

    alert_type: str
    subject: str
    at: datetime
    user_name: str | None = None
    session_id: str | None = None
    group_name: str | None = None
    robot_id: str | None = None
    message_id: str | None = None
    content: str | None = None

    @property
    def alert_key(self) -> str:
        return f"{self.alert_type}|{self.subject}|{self.user_name or ''}"

    @classmethod
    def of_message(cls, alert_type: str, m: Message, user: str | None) -> Trigger:
        """A conversation's alert raised by one of its messages."""
        return cls(
            alert_type=alert_type, subject=m.session_id, at=m.received_at, user_name=user,
            session_id=m.session_id, group_name=m.group_name or None, robot_id=m.robot_id,
            message_id=m.message_id, content=m.text,
        )  # fmt: skip


class AlertRules:
    """The alert policy of docs/rules.md §4 over the alerts of one subject (a dict alert_key -> Alert)."""

    def __init__(self, config: AlertConfig, notify_robot: str | None) -> None:
        self.c = config
        self.notify_robot = notify_robot
        self._windows = [timedelta(minutes=m) for m in config.escalation_minutes]
        self._expiry = timedelta(minutes=config.expiry_minutes)
        n = config.notifications
        self._reminder = timedelta(minutes=n.reminder_minutes)
        self._min_interval = timedelta(minutes=n.min_interval_minutes)

    # -- triggers ------------------------------------------------------------------------------

    def trigger(self, alerts: dict[str, Alert], clock: ShardClock, t: Trigger) -> list[Out]:
        key = t.alert_key
        previous = alerts.get(key)
        if previous is not None and previous.is_open:
            return self._repeat(previous, clock, t)
        level = self.c.start_levels[t.alert_type]  # type: ignore[index]
        alert = Alert(
            alert_id="al_" + _digest(key, iso(t.at)),
            alert_type=t.alert_type,
            alert_key=key,
            subject=t.subject,
            level=level,
            raised_at=t.at,
            last_triggered_at=t.at,
            session_id=t.session_id,
            user_name=t.user_name,
            group_name=t.group_name,
            robot_id=t.robot_id,
            message_id=t.message_id,
            message_content=(t.content or "")[:500] or None,
            parent_alert_id=previous.alert_id if previous is not None else None,
        )
        alerts[key] = alert
        self._schedule_expiry(alert, clock)
        out: list[Out] = [
            AlertRaised.make(
                alert_id=alert.alert_id, alert_type=alert.alert_type, level=level, alert=alert.model()
            ).at(t.at, t.session_id, t.robot_id)
        ]
        return out + self._notify(alert, clock, t.at, "raised", t.content)

    def _repeat(self, alert: Alert, clock: ShardClock, t: Trigger) -> list[Out]:
        since = t.at - alert.last_triggered_at
        alert.last_triggered_at = max(alert.last_triggered_at, t.at)
        alert.trigger_count += 1
        alert.version += 1
        self._schedule_expiry(alert, clock)
        if alert.level < 4 and since <= self._windows[alert.level - 1]:
            return self._escalate(alert, clock, t.at, "repeat", t.content)
        notify = alert.notified_at is None or t.at - alert.notified_at >= self._min_interval
        out: list[Out] = [
            AlertRetriggered.make(
                alert_id=alert.alert_id, level=alert.level, notified=notify, alert=alert.model()
            ).at(t.at, alert.session_id, alert.robot_id)
        ]
        if notify:
            out += self._notify(alert, clock, t.at, "retriggered", t.content)
        return out

    def _escalate(
        self, alert: Alert, clock: ShardClock, at: datetime, by: str, content: str | None
    ) -> list[Out]:
        before = alert.level
        alert.level = before + 1
        alert.status = "escalated"
        alert.escalation_history.append((at, before, alert.level, by))
        alert.version += 1
        out: list[Out] = [
            AlertEscalated.make(
                alert_id=alert.alert_id, from_level=before, to_level=alert.level, alert=alert.model()
            ).at(at, alert.session_id, alert.robot_id)
        ]
        return out + self._notify(alert, clock, at, "escalated", content)

    # -- operator actions ----------------------------------------------------------------------

    def escalate(
        self, alerts: dict[str, Alert], clock: ShardClock, alert_id: str, at: datetime, by: str
    ) -> list[Out]:
        """A manual escalation; nothing if the alert is unknown, closed or at level 4 already."""
        alert = self.find(alerts, alert_id)
        if alert is None or not alert.is_open or alert.level >= 4:
            return []
        return self._escalate(alert, clock, at, by, None)

    @staticmethod
    def find(alerts: dict[str, Alert], alert_id: str) -> Alert | None:
        for alert in alerts.values():  # noqa: SIM110 (a loop: no generator per call)
            if alert.alert_id == alert_id:
                return alert
        return None

    # -- cancellation --------------------------------------------------------------------------

    def cancel(
        self, alert: Alert, clock: ShardClock, at: datetime, reason: str, by: str | None = None
    ) -> list[Out]:
        if not alert.is_open:
            return []
        alert.status = "cancelled"
        alert.cancel_reason = reason
        alert.cancelled_at = at
        alert.cancelled_by = by
        alert.version += 1
        if alert.expiry_timer is not None:
            clock.cancel(alert.expiry_timer)
            alert.expiry_timer = None
        return [
            AlertCancelled.make(alert_id=alert.alert_id, reason=reason, alert=alert.model()).at(
                at, alert.session_id, alert.robot_id
            )
        ]

    def cancel_on(
        self,
        condition: str,
        alerts: dict[str, Alert],
        clock: ShardClock,
        at: datetime,
        user_name: str | None = None,
        by: str | None = None,
    ) -> list[Out]:
        """`condition` (a key of CANCELLATIONS) was met at `at`: close the open alerts of the subject it
        closes (those of `user_name` for a condition scoped to the user)."""
        rule = CANCELLATIONS[condition]
        if rule.scope == "alert":
            raise ValueError(f"{condition} names one alert: cancel_one")
        out: list[Out] = []
        if not alerts:
            return out
        of_user, types = rule.scope == "user", rule.types
        for alert in list(alerts.values()):
            if (
                alert.is_open
                and (not rule.earlier_only or alert.raised_at < at)
                and (not of_user or alert.user_name == user_name)
                and (types is None or alert.alert_type in types)
            ):
                out += self.cancel(alert, clock, at, rule.reason, by)
        return out

    def cancel_one(
        self, condition: str, alert: Alert, clock: ShardClock, at: datetime, by: str | None = None
    ) -> list[Out]:
        """A condition naming one alert (its expiry, an operator) was met."""
        return self.cancel(alert, clock, at, CANCELLATIONS[condition].reason, by)

    # -- timers --------------------------------------------------------------------------------

    def on_timer(self, alerts: dict[str, Alert], clock: ShardClock, timer: Timer) -> list[Out]:
        if timer.kind == EXPIRY:
            (alert_key,) = timer.payload
            alert = alerts.get(alert_key)
            if alert is None or not alert.is_open:
                return []
            alert.expiry_timer = None
            return self.cancel_one("expiry", alert, clock, timer.due)
        reminder = Reminder(*timer.payload)
        alert = self.find(alerts, reminder.alert_id)
        if alert is None or not alert.is_open:
            return []
        # A reminder of the notification at its level, if nothing newer went out since.
        if alert.notified_at is not None and alert.notified_at > reminder.notified_at:
            return []
        content = f"【提醒】{TYPE_NAMES.get(alert.alert_type, alert.alert_type)}告警仍未处理：{self._where(alert)}（{alert.alert_id}）"
        return self._command(alert, timer.due, "reminder", "wecom", self._staff_target(), content)

    def _schedule_expiry(self, alert: Alert, clock: ShardClock) -> None:
        if alert.expiry_timer is not None:
            clock.cancel(alert.expiry_timer)
        alert.expiry_timer = clock.schedule(
            alert.last_triggered_at + self._expiry, alert.subject, EXPIRY, (alert.alert_key,)
        )

    # -- notifications -------------------------------------------------------------------------

    def _staff_target(self) -> str:
        return self.c.notifications.staff_target

    @staticmethod
    def _where(alert: Alert) -> str:
        where = alert.group_name or (alert.robot_id and f"机器人{alert.robot_id}") or ""
        user = alert.user_name or ""
        return f"{where} {user}" if where and user else where or user

    def _notify(
        self, alert: Alert, clock: ShardClock, at: datetime, purpose: str, content: str | None
    ) -> list[Out]:
        alert.notified_at = at
        level = alert.level
        said = f"：{content[:120]}" if content else ""
        text = (
            f"【{LEVEL_NAMES[level]}·{level}级】{TYPE_NAMES.get(alert.alert_type, alert.alert_type)}"
            f"：{self._where(alert)}{said}（告警 {alert.alert_id}）"
        )
        if level >= REMINDER_FROM_LEVEL:
            reminder = (alert.alert_id, level, at)  # a Reminder, kept a plain tuple for the snapshot
            clock.schedule(at + self._reminder, alert.subject, REMINDER, reminder)
        out: list[Out] = []
        for channel, from_level in ROUTES:
            if level >= from_level:
                for target in self._targets(channel):
                    out += self._command(alert, at, purpose, channel, target, text)
        return out

    def _targets(self, channel: str) -> list[str]:
        n = self.c.notifications
        if channel == "wecom":
            return [n.staff_target]
        return n.phone_targets if channel == "phone" else n.sms_targets

    def _command(
        self, alert: Alert, at: datetime, purpose: str, channel: str, target: str, content: str
    ) -> list[Out]:
        command_id = "cmd_" + _digest(alert.alert_id, purpose, str(alert.level), channel, target, iso(at))
        robot = self.notify_robot if channel == "wecom" else None
        cause = command_cause(f"alert_{purpose}", None, alert.alert_id)
        command = construct(CommandRecord,
            command_id=command_id, channel=channel, robot_id=robot, target=target, content=content,
            at_list=[], due_time=at, cause=cause, reply=None,
        )  # fmt: skip
        created = CommandCreated.make(
            command_id=command_id, channel=channel, robot_id=robot, target=target, content=content, at_list=[],
            due_time=at, cause_event=cause.event, cause_id=alert.alert_id,
        )  # fmt: skip
        return [command, created.at(at, alert.session_id, alert.robot_id)]
