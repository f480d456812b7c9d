"""The sessions step of one shard: the hub every rule returns to. It owns the shard's event-time clock
and its state per *subject* (a conversation, by its session id, or a robot, "robot:<id>"), and hands
each item to the parts that hold the rules (docs/rules.md §3-§8):

- conversation (operators/conversation.py, `Conversation`): staff-active windows and inline commands,
  the user's waits, interventions, replies and notices planned and withdrawn;
- tasks (operators/tasks.py, `TaskBook`): after-sales tasks, the owner's response clock after a staff @,
  the staff follow-up clock;
- alerts (operators/alerts.py, the subject's alerts by key): lifecycle, the cancellation table, routing
  of notifications by level;
- robots (operators/robots.py with operators/commands.py, `RobotLedger`): sightings, online/offline,
  command status and health, robot_fault;
- satisfaction (operators/sentiment.py, `SatisfactionState`, per user across the shard);
- profiles (operators/profiles.py, `ProfileBook`): each owner's profile, folded from the events the
  other parts produced for the conversation, and its throttled customer_updated.

Plain Python; the dataflow's adapter (dataflows/stateful.py) feeds it items and snapshots it. Time comes
only from the items: record stamps and the watermark of ticks (operators/timers.py explains the clock).
Every item goes through `on_item`, which first fires what is due, in one place:

    Tick(W)                 -> the watermark moves; every timer due <= W fires
    record of key K at t    -> K's timers due <= t fire; then the record is applied

A subject idle for `idle` of event time with no timer pending (so no open alert, window or wait) is
dropped at the next sweep, so memory follows the active conversations, not every group ever seen.

What a message does, by sender (after the robots/count/satisfaction bookkeeping):
- staff or assistant: inline commands; the staff-active window opens or moves on; the user's wait ends;
  owners @-ed start their 60-min response clock; follow-ups are done; the session's open alerts are
  cancelled (staff_intervened); a low-quality reply needs intervention.
- operator: a harsh tone raises operator_harsh.
- user: an answer to a staff @ stops the response clock and starts the 3-min follow-up clock; the four
  intervention situations; complaint / private operation / low satisfaction alerts; an after-sales
  request opens a task; positive feedback or recovered satisfaction cancels the user's alerts
  (user_satisfied); "solved" words cancel them (problem_solved) and complete the user's tasks.
The order of these steps is part of the output (events, and the sequence numbers of the timers they
schedule, which order timers due at the same time): keep it when adding to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.alerts import EXPIRY, REMINDER, Alert, AlertRules, Out, Trigger
from operators.classify import classification_fields
from operators.commands import RESULT_DUE, CommandTracker, RobotLedger
from operators.conversation import SEND_DUE, USER_WAITING, WINDOW_END, Conversation, ConversationRules
from operators.profiles import PROFILE_DUE, ProfileBook, ProfileRules
from operators.replies import ReplyPlanner
from operators.robots import RobotRules
from operators.rules import ResponseDetector
from operators.sender import SenderResolver
from operators.sentiment import SatisfactionState, SatisfactionTracker
from operators.shard import ClassifiedMessage, RobotRecord, RobotSighting, robot_key
from operators.snapshots import Buckets
from operators.tasks import OPENS_TASK, TIMER_KINDS, TaskBook, TaskRules, contains_any
from operators.timers import SNAPSHOT_VERSION as TIMERS_SNAPSHOT_VERSION
from operators.timers import ShardClock, Tick, Timer
from worktool.config import BusinessConfig
from worktool.events import MessageClassified, MonitorEvent, construct_from
from worktool.models import DESK_SESSION, Classification, ControlRecord, Message, iso

# 4: pickled buckets; 3 (sparse subjects) and 2 (full subjects) still restore. The split into parts kept
# each subject's plain data as it was (Subject.snapshot), so v4 snapshots of the code before it restore.
# 5: task rows may carry their status (and a None timer), "reminders" per owner (issue 15); a v4 bucket
# reads the same (4-column rows are pending tasks), older code refuses a v5 snapshot by its number.
# 6: subjects may carry "profiles" (customer profiles) and "asks" (owners' open questions, the reply
# quality window); a v4/v5 subject has neither yet.
SNAPSHOT_VERSION = 6
_BUCKET_VERSIONS = (4, 5, 6)

_APPLIED_KEPT = 32  # control request ids remembered per subject

# The alert a user's message raises, by its type.
_USER_ALERTS = {"chat_complaint": "user_complaint", "chat_private_operation": "private_operation"}


class SessionPolicy:
    """Configuration the step applies, and the parts' rules built from it. Kept out of the snapshot on
    purpose: a changed configuration takes effect on restart even when the state is resumed from a
    snapshot."""

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
        notify = config.robots_with_role("notify")
        self.alerts = AlertRules(config.alerts, notify[0].robot_id if notify else None)
        self.replies = ReplyPlanner(config)
        self.commands = CommandTracker(config.commands, config.health)
        self.conversation = ConversationRules(config, self.alerts, self.replies, self.owners_mentioned)
        self.tasks = TaskRules(config, ResponseDetector(config.classifier), self.alerts)
        self.robots = RobotRules(self.commands, self.alerts)
        self.profiles = ProfileRules(config, self.satisfaction.c.initial)

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
    """The state of one conversation (or one robot, for its own records and alerts), by part."""

    message_count: int = 0
    robots: set[str] = field(default_factory=set)  # robots seen in the conversation
    last_at: datetime | None = None  # event time of the latest record
    conversation: Conversation = field(default_factory=Conversation)
    tasks: TaskBook = field(default_factory=TaskBook)
    profiles: ProfileBook = field(default_factory=ProfileBook)
    alerts: dict[str, Alert] = field(default_factory=dict)  # by alert key, the latest of each
    applied: list[str] = field(default_factory=list)  # request ids of the latest control records
    ledger: RobotLedger | None = None  # a robot subject's commands and health

    @property
    def status(self) -> str:
        """The conversation's status (auto | staff | handover), the subject's most read fact."""
        return self.conversation.status

    def snapshot(self) -> dict[str, Any]:
        """Plain data, sparse: a field at its default is left out (most held sessions have little more
        than a count, their robots and a time), which keeps the snapshot small and quick to pickle. One
        flat dict of the v4 layout: the parts write their own keys, which never clash."""
        data: dict[str, Any] = {"last_at": self.last_at}
        if self.message_count:
            data["message_count"] = self.message_count
        if self.robots:
            data["robots"] = sorted(self.robots)
        self.conversation.snapshot_into(data)
        self.tasks.snapshot_into(data)
        self.profiles.snapshot_into(data)
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
        ledger = data.get("ledger")
        return cls(
            message_count=data.get("message_count", 0),
            robots=set(data.get("robots", ())),
            last_at=data.get("last_at"),
            conversation=Conversation.restore(data),
            tasks=TaskBook.restore(data),
            profiles=ProfileBook.restore(data),
            alerts={k: Alert.restore(a) for k, a in data.get("alerts", {}).items()},
            applied=list(data.get("applied", ())),
            ledger=RobotLedger.restore(ledger) if ledger is not None else None,
        )


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
        # Who handles a timer, by kind (a subclass may add its own).
        self.timer_handlers: dict[str, TimerHandler] = {
            WINDOW_END: self._window_end,
            USER_WAITING: self._user_waited,
            SEND_DUE: self._send_due,
            EXPIRY: self._alert_timer,
            REMINDER: self._alert_timer,
            RESULT_DUE: self._result_due,
        }
        for kind in TIMER_KINDS:
            self.timer_handlers[kind] = self._task_timer
        self.timer_handlers[PROFILE_DUE] = self._profile_due

    # -- the one entry point -------------------------------------------------------------------

    def on_item(self, item: ItemIn) -> list[ItemOut]:
        if isinstance(item, Tick):
            out: list[ItemOut] = []
            if self.clock.advance(item.at):
                out.extend(self._fire(None, item.at))
                self._sweep(item.at)
            out.append(item)  # forwarded: the runner publishes a liveness heartbeat from it
            return out
        if isinstance(item, ControlRecord) and item.session_id == DESK_SESSION:
            # The desk's (assign_task, staff_status, its alert's): no state here, forwarded to the desk
            # step after this shard's earlier outputs (flow._to_desk)
            return [item]
        key, at = subject_of(item)
        if self.clock.is_late(at):
            self.late_records += 1
        self._touched.add(key)
        events = self._fire(key, at)
        fired = len(events)  # folded into the profiles by `_fire`, as a tick firing them would
        subject = self._subject(key, at)
        if isinstance(item, ClassifiedMessage):
            events.extend(self._on_message(subject, item))
        elif isinstance(item, RobotSighting):
            events.extend(
                self.policy.robots.seen(subject.robots, item.session_id, item.robot_id, at, None, None)
            )
        elif isinstance(item, ControlRecord):
            events.extend(self._on_control(subject, item))
        else:
            events.extend(self._on_robot_record(subject, key, item))
            return events
        if subject.profiles.owners or isinstance(item, ClassifiedMessage):
            events.extend(self._profiles(subject, key, at, events[fired:]))
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
            fired = handlers[timer.kind](timer)
            out.extend(fired)
            if fired and timer.kind != PROFILE_DUE:
                subject = self.sessions.get(timer.key)
                if subject is not None and subject.profiles.owners:
                    out.extend(self._profiles(subject, timer.key, timer.due, fired))

    def _subject(self, key: str, at: datetime) -> Subject:
        subject = self.sessions.get(key)
        if subject is None:
            subject = self.sessions[key] = Subject()
        if subject.last_at is None or at > subject.last_at:
            subject.last_at = at
        return subject

    # -- messages ------------------------------------------------------------------------------

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
            policy.robots.seen(
                s.robots, m.session_id, m.robot_id, m.received_at, m.group_name, m.reply_target
            )
        )
        s.message_count += 1
        values = classification_fields(m.message_id, c)  # a new dict: extended and handed over
        values["satisfaction"] = after
        # An owner's question opens, a reply to one is scored (operators/quality.py)
        quality = policy.conversation.answer_quality(s.conversation, m, c)
        values["reply_quality"] = None if quality is None else quality.score
        values["reply_quality_source"] = None if quality is None else quality.source
        values["reply_quality_reason"] = None if quality is None else quality.reason
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
        talk = s.conversation
        reply_state = talk.reply_state()
        if c.sender_type in ("staff", "assistant"):
            out += self._from_staff(s, m, c)
            out += policy.conversation.reply_quality(m, quality)
        elif c.sender_type == "operator":
            if c.message_type == "operator_tone_hard":
                out += self._alert(s, "operator_harsh", m, m.sender_name)
        elif c.sender_type == "user":
            out += self._from_user(s, m, c, before, after)
        if c.sender_type != "robot":
            talk.last_sender_type = c.sender_type
        rules = policy.conversation
        out += rules.state_changed(talk, m.session_id, m.received_at, reply_state, "message")
        out += rules.plan_sends(talk, self.clock, s.robots, m, c, mentioned)
        return out

    def _from_staff(self, s: Subject, m: Message, c: Classification) -> list[ItemOut]:
        p, clock, at, talk = self.policy, self.clock, m.received_at, s.conversation
        out = p.conversation.withdraw_replies(talk, clock, m, "staff_stepped_in")
        p.conversation.staff_command(talk, c.staff_command)
        if c.staff_command == "solved":
            out += p.alerts.cancel_on("solved_command", s.alerts, clock, at, by=m.sender_name)
            out += p.tasks.complete(s.tasks, s.alerts, clock, m.session_id, at, None, "solved", m.sender_name)
        out += p.conversation.staff_window(talk, clock, m)
        # Staff acted: nobody is waiting any more, follow-ups are done, open alerts are handled.
        p.conversation.staff_answered(talk, clock)
        p.tasks.staff_spoke(s.tasks, clock)
        out += p.alerts.cancel_on("staff_message", s.alerts, clock, at, by=m.sender_name)
        if c.message_type == "staff_at_user":
            out += p.tasks.staff_at(s.tasks, clock, m, p.owners_mentioned(m))
        return out

    def _from_user(
        self, s: Subject, m: Message, c: Classification, before: float | None, after: float | None
    ) -> list[ItemOut]:
        p, clock, at, user = self.policy, self.clock, m.received_at, m.sender_name
        out = p.tasks.owner_spoke(s.tasks, clock, m)
        fell_low = after is not None and before is not None and after < p.satisfaction.c.low <= before
        recovered = after is not None and before is not None and after > p.satisfaction.c.high >= before
        out += p.conversation.user_interventions(s.conversation, m, c, fell_low)
        p.conversation.user_waits(s.conversation, clock, m)
        # Cancellations first (they close what fired before this message), then new alerts.
        if contains_any(m.text, p.config.alerts.solved_words):
            out += p.alerts.cancel_on("user_says_solved", s.alerts, clock, at, user_name=user)
            out += p.tasks.complete(s.tasks, s.alerts, clock, m.session_id, at, user, "solved", user)
        elif (c.sentiment or 0) >= p.config.alerts.positive_sentiment or recovered:
            out += p.alerts.cancel_on("user_satisfied", s.alerts, clock, at, user_name=user)
        alert_type = _USER_ALERTS.get(c.message_type or "")
        if alert_type is not None:
            out += self._alert(s, alert_type, m, user)
        if fell_low and alert_type != "user_complaint":  # a complaint's level-4 alert already covers it
            out += self._alert(s, "low_satisfaction", m, user)
        if c.message_type in OPENS_TASK:
            out += p.tasks.open(s.tasks, clock, m, c.message_type)
        return out

    def _alert(self, s: Subject, alert_type: str, m: Message, user: str | None) -> list[Out]:
        return self.policy.alerts.trigger(s.alerts, self.clock, Trigger.of_message(alert_type, m, user))

    # -- robots and operators ------------------------------------------------------------------

    def _on_robot_record(self, s: Subject, key: str, rec: RobotRecord) -> list[ItemOut]:
        ledger = s.ledger = s.ledger or RobotLedger()
        return list(self.policy.robots.on_record(ledger, s.alerts, self.clock, key, rec))

    def _on_control(self, s: Subject, rec: ControlRecord) -> list[ItemOut]:
        # A request is applied once, even if the console's producer wrote it twice.
        if rec.request_id in s.applied:
            return []
        s.applied = [*s.applied[-(_APPLIED_KEPT - 1) :], rec.request_id]
        if rec.action in ("create_task", "update_task"):
            return list(self.policy.tasks.on_control(s.tasks, s.alerts, self.clock, rec))
        alerts = self.policy.alerts
        alert = alerts.find(s.alerts, rec.alert_id or "")
        if alert is None:
            return []
        if rec.action == "cancel_alert":
            return list(alerts.cancel_one("operator", alert, self.clock, rec.at, by=rec.actor))
        return list(alerts.escalate(s.alerts, self.clock, alert.alert_id, rec.at, f"manual:{rec.actor}"))

    # -- timers: each to the part that set it --------------------------------------------------

    def _window_end(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        return [] if s is None else list(self.policy.conversation.window_end(s.conversation, timer))

    def _user_waited(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        if s is None:
            return []
        return list(self.policy.conversation.user_waited(s.conversation, s.alerts, self.clock, timer))

    def _send_due(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        talk, robots = (None, set()) if s is None else (s.conversation, s.robots)
        return list(self.policy.conversation.send_due(talk, robots, timer))

    def _task_timer(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        return [] if s is None else list(self.policy.tasks.on_timer(s.tasks, s.alerts, self.clock, timer))

    def _profile_due(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        return [] if s is None else list(self.policy.profiles.on_timer(s.profiles, self.clock, timer))

    def _profiles(self, s: Subject, key: str, at: datetime, events: list[Any]) -> list[ItemOut]:
        return list(self.policy.profiles.observe(s.profiles, self.clock, key, at, events))

    def _alert_timer(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        return [] if s is None else list(self.policy.alerts.on_timer(s.alerts, self.clock, timer))

    def _result_due(self, timer: Timer) -> list[ItemOut]:
        s = self.sessions.get(timer.key)
        if s is None or s.ledger is None:
            return []
        return list(self.policy.robots.result_due(s.ledger, s.alerts, self.clock, timer))

    # -- housekeeping --------------------------------------------------------------------------

    def _sweep(self, watermark: datetime) -> None:
        if self.swept_at is not None and watermark - self.swept_at < self.policy.sweep_every:
            return
        self.swept_at = watermark
        cutoff = watermark - self.policy.idle
        idle = [
            sid for sid, s in self.sessions.items()
            if s.last_at is not None and s.last_at < cutoff and not self.clock.pending(sid) and not s.tasks.open
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
            data.get("v") not in _BUCKET_VERSIONS
        ):  # v2, v3: one plain dict; rebuilt as buckets at the first snapshot
            data = plain_snapshot(data)
            return cls(
                policy,
                ShardClock.restore(data["clock"]),
                {sid: Subject.restore(s) for sid, s in data["sessions"].items()},
                SatisfactionState.restore(data["satisfaction"]),
                data["swept_at"],
            )
        # v4-v6: the buckets go on as they were, so the first snapshot re-pickles only what changed
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
    """A snapshot of any version (2-6) as the plain v3 layout: sessions {sid: dict}, the clock's own
    format (timers in seq order) and satisfaction users as (user, score, last_at, messages) rows."""
    version = data.get("v")
    if version in (2, 3):
        return data
    if version not in _BUCKET_VERSIONS:
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
