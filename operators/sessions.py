"""The sessions step of one shard: per-conversation and per-robot state, and the monitor events.

Plain Python; the dataflow's adapter (dataflows/stateful.py) feeds it items and snapshots it. Time comes
only from the items: record stamps and the watermark of ticks (operators/timers.py explains the clock).
Every item goes through `on_item`, which first fires what is due, in one place:

    Tick(W)                 -> the watermark moves; every timer due <= W fires
    record of key K at t    -> K's timers due <= t fire; then the record is applied

State of a conversation that has been idle for `idle_days` of event time, with no timer pending, is
dropped at the next sweep, so memory follows the active conversations, not every group ever seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.classify import classification_fields
from operators.sentiment import SatisfactionState, SatisfactionTracker
from operators.shard import ClassifiedMessage, RobotRecord, RobotSighting, robot_key
from operators.timers import ShardClock, Tick, Timer
from worktool.events import CommandCallback, MessageClassified, MonitorEvent, RobotJoinedSession, RobotStatus
from worktool.models import Message

SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class SessionPolicy:
    """Configuration the step applies. Kept out of the snapshot on purpose: a changed configuration
    takes effect on restart even when the state is resumed from a snapshot."""

    satisfaction: SatisfactionTracker
    robot_ids_by_name: dict[str, str] = field(default_factory=dict)
    idle: timedelta = timedelta(days=30)
    sweep_every: timedelta = timedelta(hours=1)

    def mentioned_robots(self, m: Message) -> list[str]:
        """Our robots @-mentioned in the message. By name from rawSpoken, because only the @-ed robot's
        own report says atMe=true and that copy may be the one de-duplicated away."""
        ids = {self.robot_ids_by_name[n] for n in m.mentions if n in self.robot_ids_by_name}
        if m.at_me:
            ids.add(m.robot_id)
        return sorted(ids)


@dataclass(slots=True)
class SessionState:
    message_count: int = 0
    robots: set[str] = field(default_factory=set)
    last_at: datetime | None = None  # event time of the latest record

    def snapshot(self) -> tuple[Any, ...]:
        return (self.message_count, sorted(self.robots), self.last_at)

    @classmethod
    def restore(cls, data: tuple[Any, ...]) -> SessionState:
        count, robots, last_at = data
        return cls(count, set(robots), last_at)


ItemIn = ClassifiedMessage | RobotSighting | RobotRecord | Tick
ItemOut = MonitorEvent | Tick
TimerHandler = Callable[[Timer], list[MonitorEvent]]


class SessionStep:
    def __init__(
        self,
        policy: SessionPolicy,
        clock: ShardClock | None = None,
        sessions: dict[str, SessionState] | None = None,
        satisfaction: SatisfactionState | None = None,
        swept_at: datetime | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock or ShardClock()
        self.sessions = sessions if sessions is not None else {}
        self.satisfaction = satisfaction or SatisfactionState()
        self.swept_at = swept_at
        self.late_records = 0  # since the adapter last read it (a metric, not state)
        # What each kind of timer does; the rules of later steps register here.
        self.timer_handlers: dict[str, TimerHandler] = {}

    # -- the one entry point -------------------------------------------------------------------

    def on_item(self, item: ItemIn) -> list[ItemOut]:
        if isinstance(item, Tick):
            out: list[ItemOut] = []
            if self.clock.advance(item.at):
                out.extend(self._fire(None, item.at))
                self._sweep(item.at)
            out.append(item)  # forwarded: the runner publishes a liveness heartbeat from it
            return out
        if isinstance(item, ClassifiedMessage):
            key, at = item.message.session_id, item.message.received_at
        elif isinstance(item, RobotSighting):
            key, at = item.session_id, item.at
        else:
            key, at = robot_key(item.robot_id), item.received_at
        if self.clock.is_late(at):
            self.late_records += 1
        events = self._fire(key, at)
        if isinstance(item, ClassifiedMessage):
            events.extend(self._on_message(item))
        elif isinstance(item, RobotSighting):
            events.extend(self._robot_seen(self._session(item.session_id, at), item, None, None))
        else:
            events.extend(self._on_robot_record(item))
        return events

    def _fire(self, key: str | None, until: datetime) -> list[ItemOut]:
        """Fire due timers in (due, seq) order: every key's up to the watermark (key None), or one
        key's up to its record's stamp. A handler may schedule more; those fire here too if due."""
        out: list[ItemOut] = []
        while True:
            timer = self.clock.next_due(until) if key is None else self.clock.next_due_for(key, until)
            if timer is None:
                return out
            out.extend(self.timer_handlers[timer.kind](timer))

    # -- records -------------------------------------------------------------------------------

    def _session(self, session_id: str, at: datetime) -> SessionState:
        session = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = SessionState()
        if session.last_at is None or at > session.last_at:
            session.last_at = at
        return session

    def _robot_seen(
        self, session: SessionState, item: Message | RobotSighting, group_name: str | None, target: str | None
    ) -> list[MonitorEvent]:
        if item.robot_id in session.robots:
            return []
        session.robots.add(item.robot_id)
        at = item.received_at if isinstance(item, Message) else item.at
        data = RobotJoinedSession.model_construct(group_name=group_name, reply_target=target)
        return [data.at(at, item.session_id, item.robot_id)]

    def _on_message(self, cm: ClassifiedMessage) -> list[MonitorEvent]:
        m, c = cm.message, cm.classification
        policy = self.policy
        satisfaction = None
        if c.sender_type == "user" and c.sentiment is not None:
            # Rolling per-user satisfaction; a display name is only unique within its conversation.
            satisfaction = policy.satisfaction.observe(
                self.satisfaction, f"{m.session_id}\x1f{m.sender_name}", c.sentiment, m.received_at,
                complaint=c.message_type == "chat_complaint",
            )  # fmt: skip
        session = self._session(m.session_id, m.received_at)
        events = self._robot_seen(session, m, m.group_name, m.reply_target)
        session.message_count += 1
        data = MessageClassified.model_construct(
            **classification_fields(m.message_id, c),
            satisfaction=satisfaction,
            sender_name=m.sender_name,
            text=m.text,
            raw_text=m.raw_text,
            text_type=m.text_type,
            content_kind=m.content_kind,
            room_type=m.room_type,
            is_group=m.is_group,
            group_name=m.group_name,
            group_remark=m.group_remark,
            reply_target=m.reply_target,
            at_me=m.at_me,
            mentions=list(m.mentions),
            mentioned_robots=policy.mentioned_robots(m),
            is_echo=c.sender_type == "robot",
            session_message_count=session.message_count,
        )
        events.append(data.at(m.received_at, m.session_id, m.robot_id))
        return events

    def _on_robot_record(self, rec: RobotRecord) -> list[MonitorEvent]:
        if rec.kind in ("online", "offline") or rec.result is None:
            return [RobotStatus.model_construct(status=rec.kind).at(rec.received_at, robot_id=rec.robot_id)]
        body = rec.result
        data = CommandCallback.model_construct(
            kind=rec.kind,
            worktool_message_id=body.messageId,
            error_code=body.errorCode,
            error_reason=body.errorReason,
            command_type=body.type,
            group_name=body.groupName,
            qr_code=body.qrCode,
        )
        return [data.at(rec.received_at, robot_id=rec.robot_id)]

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
        self.policy.satisfaction.evict_idle(self.satisfaction, watermark)

    # -- snapshot ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data (dicts, lists, tuples, strings, numbers, datetimes): what a restart resumes from."""
        return {
            "v": SNAPSHOT_VERSION,
            "clock": self.clock.snapshot(),
            "sessions": {sid: s.snapshot() for sid, s in self.sessions.items()},
            "satisfaction": self.satisfaction.snapshot(),
            "swept_at": self.swept_at,
        }

    @classmethod
    def restore(cls, policy: SessionPolicy, data: dict[str, Any]) -> SessionStep:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown sessions snapshot version {data.get('v')!r}")
        return cls(
            policy,
            ShardClock.restore(data["clock"]),
            {sid: SessionState.restore(s) for sid, s in data["sessions"].items()},
            SatisfactionState.restore(data["satisfaction"]),
            data["swept_at"],
        )
