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
    cancel(reason): staff_intervened, user_satisfied, problem_solved, manual (and expired above)

Notifications by level: 1 a WeCom text through the notify robot to the staff target; 2 adds a reminder
`reminder_minutes` later if the alert is still open; 3 adds phone calls; 4 adds SMS. Each is a
CommandRecord (written to worktool.commands for the dispatcher) plus a `command_created` event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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
)
from worktool.models import CommandCause, CommandRecord, iso

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
        return construct(
            AlertSnapshot,
            alert_id=self.alert_id,
            alert_type=self.alert_type,
            alert_key=self.alert_key,
            session_id=self.session_id,
            user_name=self.user_name,
            group_name=self.group_name,
            robot_id=self.robot_id,
            level=self.level,
            status=self.status,
            escalation_count=len(self.escalation_history),
            escalation_history=[
                construct(EscalationStep, at=a, from_level=f, to_level=t, by=b)
                for a, f, t, b in self.escalation_history
            ],
            cancel_reason=self.cancel_reason,
            cancelled_at=self.cancelled_at,
            cancelled_by=self.cancelled_by,
            raised_at=self.raised_at,
            last_triggered_at=self.last_triggered_at,
            trigger_count=self.trigger_count,
            message_id=self.message_id,
            message_content=self.message_content,
            parent_alert_id=self.parent_alert_id,
            notified_at=self.notified_at,
            version=self.version,
        )

    def snapshot(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        data["escalation_history"] = list(self.escalation_history)  # a copy: the alert goes on
        return data

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Alert:
        return cls(**{**data, "escalation_history": [tuple(step) for step in data["escalation_history"]]})


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
        return next((a for a in alerts.values() if a.alert_id == alert_id), None)

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

    def cancel_where(
        self,
        alerts: dict[str, Alert],
        clock: ShardClock,
        at: datetime,
        reason: str,
        user_name: str | None = None,
        by: str | None = None,
    ) -> list[Out]:
        """Cancel the open alerts (of one user, when given) that fired before `at`."""
        out: list[Out] = []
        for alert in list(alerts.values()):
            if alert.is_open and alert.raised_at < at and (user_name is None or alert.user_name == user_name):
                out += self.cancel(alert, clock, at, reason, by)
        return out

    # -- timers --------------------------------------------------------------------------------

    def on_timer(self, alerts: dict[str, Alert], clock: ShardClock, timer: Timer) -> list[Out]:
        alert = alerts.get(timer.payload[0]) if timer.kind == EXPIRY else self.find(alerts, timer.payload[0])
        if alert is None or not alert.is_open:
            return []
        if timer.kind == EXPIRY:
            alert.expiry_timer = None
            return self.cancel(alert, clock, timer.due, "expired")
        # A reminder of the notification at `level`, if nothing newer went out since.
        if alert.notified_at is not None and alert.notified_at > timer.payload[2]:
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
        parts = [
            alert.group_name or (alert.robot_id and f"机器人{alert.robot_id}") or "",
            alert.user_name or "",
        ]
        return " ".join(p for p in parts if p)

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
        n = self.c.notifications
        out = self._command(alert, at, purpose, "wecom", self._staff_target(), text)
        if level >= 2:
            clock.schedule(at + self._reminder, alert.subject, REMINDER, (alert.alert_id, level, at))
        if level >= 3:
            for target in n.phone_targets:
                out += self._command(alert, at, purpose, "phone", target, text)
        if level >= 4:
            for target in n.sms_targets:
                out += self._command(alert, at, purpose, "sms", target, text)
        return out

    def _command(
        self, alert: Alert, at: datetime, purpose: str, channel: str, target: str, content: str
    ) -> list[Out]:
        command_id = "cmd_" + _digest(alert.alert_id, purpose, str(alert.level), channel, target, iso(at))
        robot = self.notify_robot if channel == "wecom" else None
        cause = CommandCause(event=f"alert_{purpose}", alert_id=alert.alert_id)
        command = construct(CommandRecord,
            command_id=command_id, channel=channel, robot_id=robot, target=target, content=content,
            at_list=[], due_time=at, cause=cause,
        )  # fmt: skip
        created = CommandCreated.make(
            command_id=command_id, channel=channel, robot_id=robot, target=target, content=content, at_list=[],
            due_time=at, cause_event=cause.event, cause_id=alert.alert_id,
        )  # fmt: skip
        return [command, created.at(at, alert.session_id, alert.robot_id)]
