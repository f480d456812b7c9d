"""Per-shard state machines of the dataflow. Plain Python, clock passed in through the items.

The dataflow keys every stateful step by a fixed set of shards (see `shard_for`) and broadcasts ticks to
each of them. Two steps:

- `DedupShard`: drops the copies of a message that other robots reported (operators/dedup.py) and turns
  them into `RobotSighting`s, so we still learn which robots sit in which group.
- `SessionShard`: per-session state (robots seen, message count, ...) and the monitor events.
"""

from __future__ import annotations

import pickle
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.classify import classification_fields
from operators.dedup import Deduplicator
from operators.sentiment import SatisfactionState, SatisfactionTracker
from operators.timers import ShardClock, Tick
from worktool.events import CommandCallback, MessageClassified, MonitorEvent, RobotJoinedSession, RobotStatus
from worktool.models import Classification, Message, RawRecord, ResultCallback

# Events are built from already-validated parts, so they skip pydantic validation (hot path).


def shard_for(key: str, shards: int) -> str:
    """Stable shard of a session or robot key (never Python's salted hash())."""
    return str(zlib.crc32(key.encode()) % shards)


@dataclass(frozen=True)
class ParsedMessage:
    fp: str
    message: Message


@dataclass(frozen=True)
class ClassifiedMessage:
    message: Message
    classification: Classification


@dataclass(frozen=True)
class RobotSighting:
    """A robot reported a message that another robot had already reported."""

    session_id: str
    robot_id: str
    at: datetime
    message_id: str


# Items flowing between the stateful steps.
ShardInput = ParsedMessage | RawRecord | Tick


@dataclass(frozen=True)
class ShardPolicy:
    """Configuration the shard steps apply. Kept out of the (snapshotted) state on purpose: a changed
    configuration takes effect on restart even when the state is resumed from a snapshot."""

    dedup_window: timedelta
    satisfaction: SatisfactionTracker
    robot_ids_by_name: dict[str, str] = field(default_factory=dict)

    def mentioned_robots(self, m: Message) -> list[str]:
        """Our robots @-mentioned in the message. By name from rawSpoken, because only the @-ed robot's
        own report says atMe=true and that copy may be the one de-duplicated away."""
        ids = {self.robot_ids_by_name[n] for n in m.mentions if n in self.robot_ids_by_name}
        if m.at_me:
            ids.add(m.robot_id)
        return sorted(ids)


class _FastCopy:
    """Bytewax deep-copies operator state at every snapshot; a pickle round trip does the same job
    several times faster for these plain-data states."""

    def __deepcopy__(self, memo: dict) -> Any:
        return pickle.loads(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))


@dataclass
class DedupShard(_FastCopy):
    clock: ShardClock = field(default_factory=ShardClock)
    dedup: Deduplicator = field(default_factory=Deduplicator)
    duplicates: int = 0

    def on_item(self, item: ShardInput, policy: ShardPolicy) -> list[Any]:
        if isinstance(item, Tick):
            self.clock.advance(item.at)
            self.dedup.prune(self.clock.now, policy.dedup_window)
            return [item]
        if isinstance(item, RawRecord):
            self.clock.advance(item.received_at)
            return [item]
        msg = item.message
        self.clock.advance(msg.received_at)
        verdict = self.dedup.observe(
            item.fp, msg.message_id, msg.robot_id, msg.received_at, policy.dedup_window
        )
        if not verdict.is_duplicate:
            return [msg]
        self.duplicates += 1
        if verdict.robot_is_new:
            return [RobotSighting(msg.session_id, msg.robot_id, msg.received_at, verdict.message_id)]
        return []


@dataclass
class _Session:
    message_count: int = 0
    robots: set[str] = field(default_factory=set)


@dataclass
class SessionShard(_FastCopy):
    clock: ShardClock = field(default_factory=ShardClock)
    sessions: dict[str, _Session] = field(default_factory=dict)
    satisfaction: SatisfactionState = field(default_factory=SatisfactionState)

    def on_item(
        self, item: ClassifiedMessage | RobotSighting | RawRecord | Tick, policy: ShardPolicy
    ) -> list[MonitorEvent | Tick]:
        if isinstance(item, Tick):
            self.clock.advance(item.at)
            # Forwarded so the runner can publish a liveness heartbeat (the sink throttles it).
            return [item]
        if isinstance(item, ClassifiedMessage):
            return self._on_message(item, policy)
        if isinstance(item, RobotSighting):
            self.clock.advance(item.at)
            return self._robot_seen(item.session_id, item.robot_id, item.at, group_name=None, target=None)
        return self._on_robot_record(item)

    def _robot_seen(
        self, session_id: str, robot_id: str, at: datetime, group_name: str | None, target: str | None
    ) -> list[MonitorEvent]:
        session = self.sessions.setdefault(session_id, _Session())
        if robot_id in session.robots:
            return []
        session.robots.add(robot_id)
        return [
            RobotJoinedSession.model_construct(group_name=group_name, reply_target=target).at(
                at, session_id, robot_id
            )
        ]

    def _on_message(self, cm: ClassifiedMessage, policy: ShardPolicy) -> list[MonitorEvent]:
        m, c = cm.message, cm.classification
        self.clock.advance(m.received_at)
        satisfaction = None
        if c.sender_type == "user" and c.sentiment is not None:
            # Rolling per-user satisfaction; a display name is only unique within its conversation.
            satisfaction = policy.satisfaction.observe(
                self.satisfaction,
                f"{m.session_id}\x1f{m.sender_name}",
                c.sentiment,
                m.received_at,
                complaint=c.message_type == "chat_complaint",
            )
        events = self._robot_seen(m.session_id, m.robot_id, m.received_at, m.group_name, m.reply_target)
        session = self.sessions[m.session_id]
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

    def _on_robot_record(self, rec: RawRecord) -> list[MonitorEvent]:
        self.clock.advance(rec.received_at)
        if rec.kind in ("online", "offline"):
            return [RobotStatus.model_construct(status=rec.kind).at(rec.received_at, robot_id=rec.robot_id)]
        body = ResultCallback.model_validate(rec.body)
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
