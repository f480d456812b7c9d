"""The sessions step of one shard: per-conversation and per-robot state, the event-time rules
(docs/rules.md §3 staff intervention, §4 alerts) and the monitor events.

Plain Python; the dataflow's adapter (dataflows/stateful.py) feeds it items and snapshots it. Time comes
only from the items: record stamps and the watermark of ticks (operators/timers.py explains the clock).
Every item goes through `on_item`, which first fires what is due, in one place:

    Tick(W)                 -> the watermark moves; every timer due <= W fires
    record of key K at t    -> K's timers due <= t fire; then the record is applied

State lives per *subject*: a conversation (its session id) or a robot ("robot:<id>"). A subject idle for
`idle` of event time with no timer pending (so no open alert, window or wait) is dropped at the next
sweep, so memory follows the active conversations, not every group ever seen.

What a message does, by sender (after the robots/count/satisfaction bookkeeping):
- staff or assistant: inline commands; the staff-active window opens or moves on; the user's wait ends;
  owners @-ed start their 60-min response clock; the session's open alerts are cancelled
  (staff_intervened); a low-quality reply needs intervention.
- operator: a harsh tone raises operator_harsh.
- user: an answer to a staff @ stops the response clock and starts the 3-min follow-up clock; the four
  intervention situations; complaint / private operation / low satisfaction alerts; an after-sales
  request opens a task; positive feedback or recovered satisfaction cancels the user's alerts
  (user_satisfied); "solved" words cancel them (problem_solved) and complete the user's tasks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from operators.alerts import EXPIRY, REMINDER, Alert, AlertRules, Out, Trigger
from operators.classify import classification_fields
from operators.commands import RESULT_DUE, CommandTracker, RobotLedger
from operators.replies import PlannedSend, ReplyPlanner, Skip
from operators.rules import ResponseDetector
from operators.sender import SenderResolver
from operators.sentiment import SatisfactionState, SatisfactionTracker
from operators.shard import ClassifiedMessage, RobotRecord, RobotSighting, robot_key
from operators.snapshots import Buckets
from operators.staff import ReplyQuality
from operators.timers import SNAPSHOT_VERSION as TIMERS_SNAPSHOT_VERSION
from operators.timers import ShardClock, Tick, Timer
from worktool.config import BusinessConfig
from worktool.events import (
    CommandCallback,
    CommandCreated,
    InterventionNeeded,
    MessageClassified,
    MonitorEvent,
    ReplyScheduled,
    ReplySkipped,
    ReplyWithdrawn,
    RobotJoinedSession,
    RobotStatus,
    SessionState,
    StaffWindowClosed,
    StaffWindowOpened,
    TaskCreated,
    TaskStatus,
    UserResponse,
    construct,
    construct_from,
)
from worktool.models import (
    DESK_SESSION,
    AcceptedBody,
    Classification,
    CommandCause,
    CommandRecord,
    ControlRecord,
    Message,
    ResultCallback,
    iso,
)

SNAPSHOT_VERSION = 4  # 4: pickled buckets; 3 (sparse subjects) and 2 (full subjects) still restore

# Timer kinds (alerts.py has its own two).
WINDOW_END = "staff_window_end"
USER_WAITING = "user_waiting"
NOT_COOPERATING = "user_not_cooperating"
NOT_FOLLOWED_UP = "task_not_followed_up"
TASK_UNFINISHED = "task_unfinished"
SEND_DUE = "send_due"  # a reply or a notice whose delay has passed

_APPLIED_KEPT = 32  # control request ids remembered per subject

# When one message needs intervention for several reasons, the message row keeps the most urgent.
_INTERVENTION_ORDER = (
    "complaint",
    "user_low_satisfaction",
    "user_negative_after_staff",
    "staff_low_reply_quality",
)

# After-sales task types by keyword (docs/rules.md §7), first match wins; priority per type.
_TASK_TYPES = (
    ("scan_qr", ("扫码", "二维码", "二唯码", "qr"), "high"),
    ("real_name", ("实名", "认证", "人脸", "刷脸", "身份", "出镜人", "出境人"), "high"),
    ("bind_phone", ("绑定", "换绑", "手机号", "验证码"), "normal"),
    ("appeal_video", ("申诉", "自拍", "封号", "被封", "解封"), "normal"),
)


# The alert a user's message raises, by its type.
_USER_ALERTS = {"chat_complaint": "user_complaint", "chat_private_operation": "private_operation"}


def _contains_any(text: str, words: Iterable[str]) -> bool:
    """`any(w in text for w in words)` without a generator (the per-message path)."""
    for w in words:  # noqa: SIM110 (a loop: no generator per call)
        if w in text:
            return True
    return False


def _change_name(before: tuple[str, bool, datetime | None], after: tuple[str, bool, datetime | None]) -> str:
    if before[1] != after[1]:
        return "replies_paused" if after[1] else "replies_resumed"
    if before[0] != after[0] and "handover" in (before[0], after[0]):
        return "handover" if after[0] == "handover" else "handover_ended"
    if before[2] is None:
        return "staff_window_opened"
    return "staff_window_extended"


class SessionPolicy:
    """Configuration the step applies. Kept out of the snapshot on purpose: a changed configuration
    takes effect on restart even when the state is resumed from a snapshot."""

    def __init__(
        self,
        config: BusinessConfig | None = None,
        satisfaction: SatisfactionTracker | None = None,
        idle: timedelta = timedelta(days=30),
        sweep_every: timedelta = timedelta(hours=1),
    ) -> None:
        config = config or BusinessConfig()
        self.config = config
        self.satisfaction = satisfaction or SatisfactionTracker(config.classifier.satisfaction)
        self.robot_ids_by_name = {r.name: r.robot_id for r in config.robots}
        self.idle = idle
        self.sweep_every = sweep_every
        self.senders = SenderResolver(config)
        self.responses = ResponseDetector(config.classifier)
        self.quality = ReplyQuality(config.intervention)
        notify = config.robots_with_role("notify")
        self.alerts = AlertRules(config.alerts, notify[0].robot_id if notify else None)
        self.window = timedelta(minutes=config.staff_window.minutes)
        self.waiting = timedelta(minutes=config.intervention.user_waiting_minutes)
        a = config.alerts
        self.not_cooperating = timedelta(minutes=a.user_not_cooperating_minutes)
        self.follow_up = timedelta(minutes=a.task_not_followed_up_minutes)
        self.task_unfinished = timedelta(minutes=a.task_unfinished_minutes)
        self.replies = ReplyPlanner(config)
        self.commands = CommandTracker(config.commands, config.health)

    def mentioned_robots(self, m: Message) -> list[str]:
        """Our robots @-mentioned in the message. By name from rawSpoken, because only the @-ed robot's
        own report says atMe=true and that copy may be the one de-duplicated away."""
        if not m.mentions and not m.at_me:
            return []
        ids = {self.robot_ids_by_name[n] for n in m.mentions if n in self.robot_ids_by_name}
        if m.at_me:
            ids.add(m.robot_id)
        return sorted(ids)

    def owners_mentioned(self, m: Message) -> list[str]:
        return [n for n in m.mentions if self.senders.sender_type(n, m.room_type) == "user"]


@dataclass(slots=True)
class Subject:
    """The state of one conversation (or one robot, for its own records and alerts)."""

    message_count: int = 0
    robots: set[str] = field(default_factory=set)
    last_at: datetime | None = None  # event time of the latest record
    status: str = "auto"
    ai_paused: bool = False
    staff_until: datetime | None = None
    staff_since: datetime | None = None
    window_timer: int | None = None
    last_sender_type: str | None = None
    waiting: tuple[int, str, str] | None = None  # (timer, message_id, user) of the oldest unanswered message
    awaiting: dict[str, int] = field(default_factory=dict)  # owner @-ed by staff -> response timer
    follow_up: dict[str, int] = field(default_factory=dict)  # owner responded -> staff follow-up timer
    tasks: dict[str, tuple[str, str, datetime, int]] = field(
        default_factory=dict
    )  # id -> (user, type, at, timer)
    alerts: dict[str, Alert] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)  # request ids of the latest control records
    replies: dict[str, int] = field(default_factory=dict)  # message -> timer of its reply not sent yet
    ledger: RobotLedger | None = None  # a robot subject's commands and health

    def reply_state(self) -> tuple[str, bool, datetime | None]:
        return self.status, self.ai_paused, self.staff_until

    def snapshot(self) -> dict[str, Any]:
        """Plain data, sparse: a field at its default is left out (most held sessions have little more
        than a count, their robots and a time), which keeps the snapshot small and quick to pickle."""
        data: dict[str, Any] = {"last_at": self.last_at}
        if self.message_count:
            data["message_count"] = self.message_count
        if self.robots:
            data["robots"] = sorted(self.robots)
        if self.status != "auto":
            data["status"] = self.status
        if self.ai_paused:
            data["ai_paused"] = True
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        for name in _MAPPINGS:
            value = getattr(self, name)
            if value:
                data[name] = dict(value)
        if self.alerts:
            data["alerts"] = {k: a.snapshot() for k, a in self.alerts.items()}
        if self.applied:
            data["applied"] = list(self.applied)
        if self.ledger is not None:
            data["ledger"] = self.ledger.snapshot()
        return data

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Subject:
        """From `snapshot()`, or from the full dicts written before snapshots were sparse (v2)."""
        waiting, ledger = data.get("waiting"), data.get("ledger")
        return cls(
            **{
                **data,
                "robots": set(data.get("robots", ())),
                "waiting": tuple(waiting) if waiting else None,
                "awaiting": dict(data.get("awaiting", ())),
                "follow_up": dict(data.get("follow_up", ())),
                "tasks": {k: tuple(v) for k, v in data.get("tasks", {}).items()},
                "alerts": {k: Alert.restore(a) for k, a in data.get("alerts", {}).items()},
                "applied": list(data.get("applied", ())),
                "replies": dict(data.get("replies", ())),
                "ledger": RobotLedger.restore(ledger) if ledger is not None else None,
            }
        )


_OPTIONAL = ("staff_until", "staff_since", "window_timer", "last_sender_type", "waiting")
_MAPPINGS = ("awaiting", "follow_up", "tasks", "replies")


ItemIn = ClassifiedMessage | RobotSighting | RobotRecord | ControlRecord | Tick
ItemOut = MonitorEvent | Tick | Out | ControlRecord  # a desk control record: forwarded
TimerHandler = Callable[[Timer], list[Any]]


def subject_of(item: ClassifiedMessage | RobotSighting | RobotRecord | ControlRecord) -> tuple[str, datetime]:
    """Whose state an item touches, and its event time."""
    if isinstance(item, ClassifiedMessage):
        return item.message.session_id, item.message.received_at
    if isinstance(item, RobotSighting):
        return item.session_id, item.at
    if isinstance(item, ControlRecord):
        return item.session_id or robot_key(item.robot_id or ""), item.at
    return robot_key(item.robot_id), item.received_at


class SessionStep:
    def __init__(
        self,
        policy: SessionPolicy,
        clock: ShardClock | None = None,
        subjects: dict[str, Subject] | None = None,
        satisfaction: SatisfactionState | None = None,
        swept_at: datetime | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock or ShardClock()
        self.sessions = subjects if subjects is not None else {}
        self.satisfaction = satisfaction or SatisfactionState()
        self.swept_at = swept_at
        self.late_records = 0  # since the adapter last read it (a metric, not state)
        # The snapshot is rebuilt only for what changed since the previous one (operators/snapshots.py):
        # bytewax asks for it at every epoch, and a shard may hold many thousands of idle sessions.
        self._touched: set[str] = set()  # subjects changed since the last snapshot
        self._snap_sessions = Buckets(self._subject_plain, self.sessions)
        self._snap_timers = Buckets(self.clock.key_timers, self.clock.track())
        self.clock.touched = set()  # every key with a timer is in the buckets' first snapshot
        self.satisfaction.touched = set()
        self._snap_users = Buckets(self._user_plain, self.satisfaction.users)
        self.timer_handlers: dict[str, TimerHandler] = {
            WINDOW_END: self._window_end,
            USER_WAITING: self._user_waited,
            NOT_COOPERATING: self._not_cooperating,
            NOT_FOLLOWED_UP: self._not_followed_up,
            TASK_UNFINISHED: self._task_unfinished,
            EXPIRY: self._alert_timer,
            REMINDER: self._alert_timer,
            SEND_DUE: self._send_due,
            RESULT_DUE: self._result_due,
        }

    # -- the one entry point -------------------------------------------------------------------

    def on_item(self, item: ItemIn) -> list[ItemOut]:
        if isinstance(item, Tick):
            out: list[ItemOut] = []
            if self.clock.advance(item.at):
                out.extend(self._fire(None, item.at))
                self._sweep(item.at)
            out.append(item)  # forwarded: the runner publishes a liveness heartbeat from it
            return out
        key, at = subject_of(item)
        if self.clock.is_late(at):
            self.late_records += 1
        self._touched.add(key)
        events = self._fire(key, at)
        subject = self._subject(key, at)
        if isinstance(item, ClassifiedMessage):
            events.extend(self._on_message(subject, item))
        elif isinstance(item, RobotSighting):
            events.extend(self._robot_seen(subject, item.session_id, item.robot_id, at, None, None))
        elif isinstance(item, ControlRecord):
            events.extend(self._on_control(subject, item))
            if item.session_id == DESK_SESSION:  # the desk's (assign_task, staff_status, its alert):
                events.append(item)  # forwarded to it after this shard's earlier outputs (flow._to_desk)
        else:
            events.extend(self._on_robot_record(subject, key, item))
        return events

    def _fire(self, key: str | None, until: datetime) -> list[ItemOut]:
        """Fire due timers in (due, seq) order: every key's up to the watermark (key None), or one
        key's up to its record's stamp. A handler may schedule more; those fire here too if due."""
        out: list[ItemOut] = []
        clock, handlers, touched = self.clock, self.timer_handlers, self._touched
        while True:
            timer = clock.next_due(until) if key is None else clock.next_due_for(key, until)
            if timer is None:
                return out
            touched.add(timer.key)  # a handler changes only its timer's subject
            out.extend(handlers[timer.kind](timer))

    def _subject(self, key: str, at: datetime) -> Subject:
        subject = self.sessions.get(key)
        if subject is None:
            subject = self.sessions[key] = Subject()
        if subject.last_at is None or at > subject.last_at:
            subject.last_at = at
        return subject

    # -- messages ------------------------------------------------------------------------------

    def _robot_seen(
        self,
        s: Subject,
        session_id: str,
        robot_id: str,
        at: datetime,
        group_name: str | None,
        target: str | None,
    ) -> list[MonitorEvent]:
        if robot_id in s.robots:
            return []
        s.robots.add(robot_id)
        data = RobotJoinedSession.make(group_name=group_name, reply_target=target)
        return [data.at(at, session_id, robot_id)]

    def _on_message(self, s: Subject, cm: ClassifiedMessage) -> list[ItemOut]:
        m, c = cm.message, cm.classification
        policy = self.policy
        before = after = None
        if c.sender_type == "user" and c.sentiment is not None:
            # Rolling per-user satisfaction; a display name is only unique within its conversation.
            user = f"{m.session_id}\x1f{m.sender_name}"
            before = policy.satisfaction.score(self.satisfaction, user)
            after = policy.satisfaction.observe(
                self.satisfaction,
                user,
                c.sentiment,
                m.received_at,
                complaint=c.message_type == "chat_complaint",
            )
        out: list[ItemOut] = list(
            self._robot_seen(s, m.session_id, m.robot_id, m.received_at, m.group_name, m.reply_target)
        )
        s.message_count += 1
        values = classification_fields(m.message_id, c)  # a new dict: extended and handed over
        values["satisfaction"] = after
        values["sender_name"] = m.sender_name
        values["text"] = m.text
        values["raw_text"] = m.raw_text
        values["text_type"] = m.text_type
        values["content_kind"] = m.content_kind
        values["room_type"] = m.room_type
        values["is_group"] = m.is_group
        values["group_name"] = m.group_name
        values["group_remark"] = m.group_remark
        values["reply_target"] = m.reply_target
        values["at_me"] = m.at_me
        values["mentions"] = list(m.mentions)
        values["mentioned_robots"] = mentioned = policy.mentioned_robots(m)
        values["is_echo"] = c.sender_type == "robot"
        values["session_message_count"] = s.message_count
        data = construct_from(MessageClassified, values)
        out.append(data.at(m.received_at, m.session_id, m.robot_id))
        reply_state = s.reply_state()
        if c.sender_type in ("staff", "assistant"):
            out += self._from_staff(s, m, c)
        elif c.sender_type == "operator":
            if c.message_type == "operator_tone_hard":
                out += self._alert(s, "operator_harsh", m, m.sender_name)
        elif c.sender_type == "user":
            out += self._from_user(s, m, c, before, after)
        if c.sender_type != "robot":
            s.last_sender_type = c.sender_type
        out += self._state_changed(s, m.session_id, m.received_at, reply_state, "message")
        out += self._plan_sends(s, m, c, mentioned)
        return out

    def _from_staff(self, s: Subject, m: Message, c: Classification) -> list[ItemOut]:
        p, at = self.policy, m.received_at
        out = self._withdraw_replies(s, m, "staff_stepped_in")
        out += self._staff_command(s, m, c.staff_command)
        out += self._staff_window(s, m)
        # Staff acted: nobody is waiting any more, follow-ups are done, open alerts are handled.
        if s.waiting is not None:
            self.clock.cancel(s.waiting[0])
            s.waiting = None
        for timer in s.follow_up.values():
            self.clock.cancel(timer)
        s.follow_up.clear()
        out += p.alerts.cancel_where(s.alerts, self.clock, at, "staff_intervened", by=m.sender_name)
        if c.message_type == "staff_at_user":
            for owner in p.owners_mentioned(m):
                if owner not in s.awaiting:
                    due = at + p.not_cooperating
                    s.awaiting[owner] = self.clock.schedule(due, m.session_id, NOT_COOPERATING, owner)
        if c.message_type == "staff_reply_user" and p.quality.is_low(p.quality.score(m.text)):
            out += self._intervention(m, "staff_low_reply_quality", m.sender_name)
        return out

    def _staff_command(self, s: Subject, m: Message, command: str | None) -> list[ItemOut]:
        """[暂停回复] / [恢复回复] / [转人工] / [已解决]."""
        if command == "pause_replies":
            s.ai_paused = True  # (pending replies were withdrawn by the staff message itself)
        elif command == "handover":
            s.status = "handover"
        elif command in ("resume_replies", "solved"):
            if command == "resume_replies":
                s.ai_paused = False
            if s.status == "handover":
                s.status = "staff"
        if command != "solved":
            return []
        at = m.received_at
        out = self.policy.alerts.cancel_where(s.alerts, self.clock, at, "problem_solved", by=m.sender_name)
        return out + self._complete_tasks(s, m.session_id, at, None)

    def _staff_window(self, s: Subject, m: Message) -> list[ItemOut]:
        """The staff-active window opens, or moves on."""
        at, sid = m.received_at, m.session_id
        opened = s.staff_until is None
        if s.window_timer is not None:
            self.clock.cancel(s.window_timer)
        s.staff_until = at + self.policy.window
        s.window_timer = self.clock.schedule(s.staff_until, sid, WINDOW_END)
        if not opened:
            return []
        s.staff_since = at
        if s.status == "auto":
            s.status = "staff"
        data = StaffWindowOpened.make(until=s.staff_until, staff_name=m.sender_name, message_id=m.message_id)
        return [data.at(at, sid, m.robot_id)]

    def _from_user(
        self, s: Subject, m: Message, c: Classification, before: float | None, after: float | None
    ) -> list[ItemOut]:
        p, at, user = self.policy, m.received_at, m.sender_name
        out = self._user_answered(s, m)
        fell_low = after is not None and before is not None and after < p.satisfaction.c.low <= before
        recovered = after is not None and before is not None and after > p.satisfaction.c.high >= before
        out += self._user_interventions(s, m, c, fell_low)
        # Staff are handling the session: the oldest unanswered user message starts the wait.
        if s.status != "auto" and s.waiting is None:
            timer = self.clock.schedule(at + p.waiting, m.session_id, USER_WAITING, m.message_id)
            s.waiting = (timer, m.message_id, user)
        # Cancellations first (they close what fired before this message), then new alerts.
        if _contains_any(m.text, p.config.alerts.solved_words):
            out += p.alerts.cancel_where(s.alerts, self.clock, at, "problem_solved", user_name=user)
            out += self._complete_tasks(s, m.session_id, at, user)
        elif (c.sentiment or 0) >= p.config.alerts.positive_sentiment or recovered:
            out += p.alerts.cancel_where(s.alerts, self.clock, at, "user_satisfied", user_name=user)
        alert_type = _USER_ALERTS.get(c.message_type or "")
        if alert_type is not None:
            out += self._alert(s, alert_type, m, user)
        if fell_low and alert_type != "user_complaint":  # a complaint's level-4 alert already covers it
            out += self._alert(s, "low_satisfaction", m, user)
        if c.message_type == "chat_after_sales" and self._open_task_of(s, user) is None:
            out += self._create_task(s, m)
        return out

    def _user_answered(self, s: Subject, m: Message) -> list[ItemOut]:
        """An owner @-ed by staff speaks: the response clock stops; if they respond, staff must follow
        up within the follow-up minutes."""
        user = m.sender_name
        if user not in s.awaiting:
            return []
        self.clock.cancel(s.awaiting.pop(user))
        status = self.policy.responses.status(m.text) or "responded"
        out: list[ItemOut] = []
        task = self._open_task_of(s, user)
        if task is not None:
            out.append(UserResponse.make(task_id=task, status=status).at(m.received_at, m.session_id))
        if status == "responded" and user not in s.follow_up:
            due = m.received_at + self.policy.follow_up
            s.follow_up[user] = self.clock.schedule(due, m.session_id, NOT_FOLLOWED_UP, user)
        return out

    def _user_interventions(self, s: Subject, m: Message, c: Classification, fell_low: bool) -> list[ItemOut]:
        """Three of the four situations (the fourth, waiting too long, is a timer); a message needing
        intervention for several reasons keeps the most urgent."""
        reasons = []
        if c.message_type == "chat_complaint":
            reasons.append("complaint")
        if fell_low:
            reasons.append("user_low_satisfaction")
        negative = (c.sentiment or 0) <= self.policy.config.intervention.negative_sentiment
        if negative and s.last_sender_type in ("staff", "assistant"):
            reasons.append("user_negative_after_staff")
        if not reasons:
            return []
        return self._intervention(m, min(reasons, key=_INTERVENTION_ORDER.index), m.sender_name)

    def _intervention(self, m: Message, reason: str, user: str | None) -> list[ItemOut]:
        data = InterventionNeeded.make(message_id=m.message_id, reason=reason, user_name=user)
        return [data.at(m.received_at, m.session_id, m.robot_id)]

    def _alert(
        self, s: Subject, alert_type: str, m: Message, user: str | None, content: str | None = None
    ) -> list[Out]:
        trigger = Trigger(
            alert_type=alert_type, subject=m.session_id, at=m.received_at, user_name=user, session_id=m.session_id,
            group_name=m.group_name or None, robot_id=m.robot_id, message_id=m.message_id,
            content=content if content is not None else m.text,
        )  # fmt: skip
        return self.policy.alerts.trigger(s.alerts, self.clock, trigger)

    # -- replies and notices (docs/rules.md §5) ------------------------------------------------

    def _plan_sends(self, s: Subject, m: Message, c: Classification, mentioned: list[str]) -> list[ItemOut]:
        planner = self.policy.replies
        if c.sender_type == "user" and c.message_type == "chat_after_sales":
            notice = planner.plan_notice(m)  # to staff, through the notify robot; never withdrawn
            self.clock.schedule(notice.due, m.session_id, SEND_DUE, notice.payload())
        if not planner.wants_reply(m, c, mentioned):
            return []
        owners = self.policy.owners_mentioned(m)
        plan = planner.plan_reply(m, c, s.robots, owners, s.ai_paused, s.status != "auto")
        if isinstance(plan, Skip):
            return [
                ReplySkipped.make(message_id=m.message_id, reason=plan.reason).at(m.received_at, m.session_id)
            ]
        s.replies[m.message_id] = self.clock.schedule(plan.due, m.session_id, SEND_DUE, plan.payload())
        data = ReplyScheduled.make(
            message_id=m.message_id,
            robot_id=plan.robot_id,
            target=plan.target,
            delay_s=plan.delay_s,
            due_time=plan.due,
        )
        return [data.at(m.received_at, m.session_id, plan.robot_id)]

    def _withdraw_replies(self, s: Subject, m: Message, reason: str) -> list[ItemOut]:
        out: list[ItemOut] = []
        for message_id, timer in s.replies.items():
            if self.clock.cancel(timer):
                data = ReplyWithdrawn.make(message_id=message_id, reason=reason)
                out.append(data.at(m.received_at, m.session_id))
        s.replies.clear()
        return out

    def _send_due(self, timer: Timer) -> list[ItemOut]:
        plan = PlannedSend.from_payload(timer.payload)
        if plan.cause == "reply_scheduled":
            s = self.sessions.get(timer.key)
            if s is None or s.replies.pop(plan.message_id, None) != timer.seq:
                return []
            # Chosen again now that every robot's report of the message has arrived (docs/rules.md §5).
            robot = self.policy.replies.robot_for(s.robots, plan.reporting, plan.asked_at or timer.due)
            if robot is None:
                skip = ReplySkipped.make(message_id=plan.message_id, reason="no_reply_robot_in_group")
                return [skip.at(timer.due, timer.key)]
            if robot != plan.robot_id:
                plan = replace(plan, robot_id=robot)
        cause = CommandCause(event=plan.cause, message_id=plan.message_id)
        command = construct(CommandRecord,
            command_id=plan.command_id, channel="wecom", robot_id=plan.robot_id, target=plan.target,
            content=plan.content, at_list=list(plan.at_list), due_time=plan.due, cause=cause,
        )  # fmt: skip
        created = CommandCreated.make(
            command_id=plan.command_id, channel="wecom", robot_id=plan.robot_id, target=plan.target,
            content=plan.content, at_list=list(plan.at_list), due_time=plan.due, cause_event=plan.cause,
            cause_id=plan.message_id,
        )  # fmt: skip
        return [command, created.at(timer.due, timer.key, plan.robot_id)]

    # -- after-sales tasks (the minimum the alerts need: open, time out, complete) -------------

    @staticmethod
    def _open_task_of(s: Subject, user: str) -> str | None:
        return next((tid for tid, t in s.tasks.items() if t[0] == user), None)

    def _create_task(self, s: Subject, m: Message) -> list[ItemOut]:
        task_type, priority = "other", "normal"
        text = m.text.lower()
        for name, words, prio in _TASK_TYPES:
            if _contains_any(text, words):
                task_type, priority = name, prio
                break
        task_id = (
            "task_" + hashlib.blake2b(f"{m.message_id}\x1fafter_sales".encode(), digest_size=10).hexdigest()
        )
        timer = self.clock.schedule(
            m.received_at + self.policy.task_unfinished, m.session_id, TASK_UNFINISHED, task_id
        )
        s.tasks[task_id] = (m.sender_name, task_type, m.received_at, timer)
        data = TaskCreated.make(
            task_id=task_id, task_type=task_type, priority=priority, user_name=m.sender_name,
            group_name=m.group_name or None, message_id=m.message_id, description=m.text[:500],
        )  # fmt: skip
        return [data.at(m.received_at, m.session_id, m.robot_id)]

    def _complete_tasks(self, s: Subject, sid: str, at: datetime, user: str | None) -> list[ItemOut]:
        out: list[ItemOut] = []
        for task_id, (owner, _type, _since, timer) in list(s.tasks.items()):
            if user is None or owner == user:
                self.clock.cancel(timer)
                del s.tasks[task_id]
                out.append(TaskStatus.make(task_id=task_id, status="completed").at(at, sid))
        return out

    # -- timers ----------------------------------------------------------------------------------

    def _window_end(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        if s is None or s.staff_until != timer.due:
            return []
        before = s.reply_state()
        opened = s.staff_since
        s.staff_until = s.staff_since = None
        s.window_timer = None
        if s.status == "staff":
            s.status = "auto"
        out: list[ItemOut] = [StaffWindowClosed.make(opened_at=opened).at(timer.due, timer.key)]
        return out + self._state_changed(s, timer.key, timer.due, before, "staff_window_closed")

    def _timer_alert(
        self, timer: Timer, alert_type: str, user: str, message_id: str | None = None
    ) -> list[Out]:
        s = self.sessions[timer.key]
        trigger = Trigger(alert_type=alert_type, subject=timer.key, at=timer.due, user_name=user,
                          session_id=timer.key, message_id=message_id)  # fmt: skip
        return self.policy.alerts.trigger(s.alerts, self.clock, trigger)

    def _user_waited(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        if s is None or s.waiting is None or s.waiting[0] != timer.seq:
            return []
        _, message_id, user = s.waiting
        s.waiting = None
        event = InterventionNeeded.make(message_id=message_id, reason="user_waiting_too_long", user_name=user)
        return [event.at(timer.due, timer.key), *self._timer_alert(timer, "staff_no_reply", user, message_id)]

    def _not_cooperating(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        if s is None or s.awaiting.get(timer.payload) != timer.seq:
            return []
        del s.awaiting[timer.payload]
        return list(self._timer_alert(timer, "user_not_cooperating", timer.payload))

    def _not_followed_up(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        if s is None or s.follow_up.get(timer.payload) != timer.seq:
            return []
        del s.follow_up[timer.payload]
        return list(self._timer_alert(timer, "task_not_followed_up", timer.payload))

    def _task_unfinished(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        task = s.tasks.get(timer.payload) if s is not None else None
        if task is None:
            return []
        return list(self._timer_alert(timer, "task_unfinished", task[0]))

    def _alert_timer(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        return [] if s is None else list(self.policy.alerts.on_timer(s.alerts, self.clock, timer))

    # -- robots and operators ------------------------------------------------------------------

    def _on_robot_record(self, s: Subject, key: str, rec: RobotRecord) -> list[ItemOut]:
        out: list[ItemOut] = []
        tracker = self.policy.commands
        ledger = s.ledger = s.ledger or RobotLedger()
        at, robot_id = rec.received_at, rec.robot_id
        if isinstance(rec.result, AcceptedBody):
            out += tracker.accepted(ledger, self.clock, key, robot_id, rec.result, at)
        elif isinstance(rec.result, ResultCallback) and rec.kind == "result":
            out += tracker.result(ledger, self.clock, robot_id, rec.result, at)
        elif rec.kind in ("online", "offline"):
            out += tracker.status(ledger, rec.kind == "online", at, robot_id)
        out += self._health_fault(s, key, out, robot_id)
        if rec.kind in ("online", "offline") or rec.result is None:
            out.append(RobotStatus.make(status=rec.kind).at(rec.received_at, robot_id=rec.robot_id))
            if rec.kind == "offline":
                trigger = Trigger(alert_type="robot_fault", subject=key, at=rec.received_at, robot_id=rec.robot_id,
                                  content="机器人离线")  # fmt: skip
                out += self.policy.alerts.trigger(s.alerts, self.clock, trigger)
            elif rec.kind == "online":
                out += self.policy.alerts.cancel_where(
                    s.alerts, self.clock, rec.received_at, "problem_solved"
                )
            return out
        body = rec.result
        data = CommandCallback.make(
            kind=rec.kind,
            worktool_message_id=body.messageId,
            error_code=body.errorCode,
            error_reason=body.errorReason,
            command_type=getattr(body, "type", None),
            group_name=getattr(body, "groupName", None),
            qr_code=getattr(body, "qrCode", None),
        )
        return [data.at(rec.received_at, robot_id=rec.robot_id), *out]

    def _health_fault(self, s: Subject, key: str, events: list[ItemOut], robot_id: str) -> list[ItemOut]:
        """A robot whose health falls to critical while online -> robot_fault (offline raises its own)."""
        for e in events:
            if (
                isinstance(e, MonitorEvent)
                and e.event == "robot_health"
                and e.data.band == "critical"
                and e.data.online
            ):
                trigger = Trigger(alert_type="robot_fault", subject=key, at=e.event_time, robot_id=robot_id,
                                  content=f"健康分 {e.data.score:.0f}")  # fmt: skip
                return list(self.policy.alerts.trigger(s.alerts, self.clock, trigger))
        return []

    def _result_due(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        if s is None or s.ledger is None:
            return []
        robot_id = timer.key.removeprefix("robot:")
        events = self.policy.commands.on_timer(s.ledger, self.clock, timer, robot_id)
        return [*events, *self._health_fault(s, timer.key, events, robot_id)]

    def _on_control(self, s: Subject, rec: ControlRecord) -> list[ItemOut]:
        # A request is applied once, even if the console's producer wrote it twice.
        if rec.request_id in s.applied:
            return []
        s.applied = [*s.applied[-(_APPLIED_KEPT - 1) :], rec.request_id]
        alerts = self.policy.alerts
        alert = alerts.find(s.alerts, rec.alert_id or "")
        if alert is None:
            return []
        if rec.action == "cancel_alert":
            return list(alerts.cancel(alert, self.clock, rec.at, "manual", by=rec.actor))
        return list(alerts.escalate(s.alerts, self.clock, alert.alert_id, rec.at, f"manual:{rec.actor}"))

    # -- session state events ------------------------------------------------------------------

    def _state_changed(
        self, s: Subject, sid: str, at: datetime, before: tuple[str, bool, datetime | None], change: str
    ) -> list[ItemOut]:
        after = s.reply_state()
        if after == before:
            return []
        if change == "message":
            change = _change_name(before, after)
        data = SessionState.make(
            status=s.status, ai_paused=s.ai_paused, staff_active_until=s.staff_until, change=change
        )
        return [data.at(at, sid)]

    # -- housekeeping --------------------------------------------------------------------------

    def _sweep(self, watermark: datetime) -> None:
        if self.swept_at is not None and watermark - self.swept_at < self.policy.sweep_every:
            return
        self.swept_at = watermark
        cutoff = watermark - self.policy.idle
        idle = [
            sid for sid, s in self.sessions.items()
            if s.last_at is not None and s.last_at < cutoff and not self.clock.pending(sid)
        ]  # fmt: skip
        for sid in idle:
            del self.sessions[sid]
        self._touched.update(idle)
        self.policy.satisfaction.evict_idle(self.satisfaction, watermark)

    # -- snapshot ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data: the keyed parts (subjects, timers by key, users' satisfaction) as pickled buckets,
        of which only those holding a key changed since the previous snapshot are pickled again, so a
        snapshot costs what changed, not what is held. An earlier snapshot never changes (new tuples of
        immutable bytes). `plain_snapshot()` reads one back."""
        clock, satisfaction = self.clock, self.satisfaction
        self._snap_sessions.touch_all(self._touched)
        self._touched.clear()
        self._snap_timers.touch_all(clock.touched or ())
        clock.touched = set()
        self._snap_users.touch_all(satisfaction.touched or ())
        satisfaction.touched = set()
        return {
            "v": SNAPSHOT_VERSION,
            "clock": {
                "watermark": clock.watermark,
                "seq": clock.last_seq,
                "timers": self._snap_timers.snapshot(),
            },
            "sessions": self._snap_sessions.snapshot(),
            "satisfaction": {"users": self._snap_users.snapshot(), "swept_at": satisfaction.swept_at},
            "swept_at": self.swept_at,
        }

    def _subject_plain(self, sid: str) -> dict[str, Any] | None:
        s = self.sessions.get(sid)
        return None if s is None else s.snapshot()

    def _user_plain(self, user: str) -> tuple[float, datetime, int] | None:
        u = self.satisfaction.users.get(user)
        return None if u is None else (u.score, u.last_at, u.messages)

    @classmethod
    def restore(cls, policy: SessionPolicy, data: dict[str, Any]) -> SessionStep:
        if (
            data.get("v") != SNAPSHOT_VERSION
        ):  # v2, v3: one plain dict; rebuilt as buckets at the first snapshot
            data = plain_snapshot(data)
            return cls(
                policy,
                ShardClock.restore(data["clock"]),
                {sid: Subject.restore(s) for sid, s in data["sessions"].items()},
                SatisfactionState.restore(data["satisfaction"]),
                data["swept_at"],
            )
        # v4: the buckets go on as they were, so the first snapshot re-pickles only what changed
        clock, satisfaction = data["clock"], data["satisfaction"]
        snap_sessions, sessions = Buckets.resume(data["sessions"])
        snap_timers, timers = Buckets.resume(clock["timers"])
        snap_users, users = Buckets.resume(satisfaction["users"])
        step = cls(
            policy,
            ShardClock.restore(_clock_data(clock, timers)),
            {sid: Subject.restore(s) for sid, s in sessions.items()},
            SatisfactionState.restore(_satisfaction_data(satisfaction, users)),
            data["swept_at"],
        )
        step._snap_sessions = snap_sessions.bind(step._subject_plain)
        step._snap_timers = snap_timers.bind(step.clock.key_timers)
        step._snap_users = snap_users.bind(step._user_plain)
        return step


def plain_snapshot(data: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of any version (2, 3, 4) as the plain v3 layout: sessions {sid: dict}, the clock's own
    format (timers in seq order) and satisfaction users as (user, score, last_at, messages) rows."""
    version = data.get("v")
    if version in (2, 3):
        return data
    if version != SNAPSHOT_VERSION:
        raise ValueError(f"unknown sessions snapshot version {version!r}")
    clock, satisfaction = data["clock"], data["satisfaction"]
    return {
        "v": 3,
        "clock": _clock_data(clock, Buckets.load(clock["timers"])),
        "sessions": Buckets.load(data["sessions"]),
        "satisfaction": _satisfaction_data(satisfaction, Buckets.load(satisfaction["users"])),
        "swept_at": data["swept_at"],
    }


def _clock_data(clock: dict[str, Any], timers: dict[str, Any]) -> dict[str, Any]:
    rows = [
        (due, seq, key, kind, payload) for key, kept in timers.items() for due, seq, kind, payload in kept
    ]
    rows.sort(key=lambda t: t[1])
    return {
        "v": TIMERS_SNAPSHOT_VERSION,
        "watermark": clock["watermark"],
        "seq": clock["seq"],
        "timers": rows,
    }


def _satisfaction_data(satisfaction: dict[str, Any], users: dict[str, Any]) -> dict[str, Any]:
    return {"users": [(k, *u) for k, u in users.items()], "swept_at": satisfaction["swept_at"]}


__all__ = ["SessionPolicy", "SessionStep", "Subject", "iso", "plain_snapshot"]
