"""De-duplication of the same message reported by several robots.

WorkTool sends no message id and every robot in a group (monitor, notify, day, night) reports each
message, so one message arrives up to four times, a few hundred milliseconds apart. A report is a
duplicate when a message with the same content fingerprint (session, sender, text type, raw text) was
reported within `window` by a DIFFERENT robot, or is the very same record again (the gateway's spool may
re-send a record after a crash). The same robot reporting the same text again is a genuine repeat (the
owner really typed "好的" twice): WorkTool never re-sends.

State is a dict in insertion (= event-time) order, pruned from the front at each watermark, so memory is
bounded by the number of messages per window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from operators.shard import ParsedMessage, RobotRecord, RobotSighting
from operators.timers import Tick
from worktool.models import ControlRecord, Message


@dataclass(slots=True)
class _Seen:
    message_id: str
    first_at: datetime
    robots: set[str]
    stamps: set[tuple[str, datetime]]


class Verdict(NamedTuple):  # a tuple: built for every message, a frozen dataclass costs twice as much
    is_duplicate: bool
    message_id: str  # the id of the first report (the one that was processed)
    robot_is_new: bool  # this robot had not reported this message before


@dataclass
class Deduplicator:
    """State only; the window is policy and passed in, so a configuration change applies after a
    restart from a snapshot."""

    _seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, fp: str, message_id: str, robot_id: str, at: datetime, window: timedelta) -> Verdict:
        seen = self._seen
        entry = seen.get(fp)
        if entry is None:  # most reports: a new message
            seen[fp] = _Seen(message_id, at, {robot_id}, {(robot_id, at)})
            return Verdict(False, message_id, True)
        if abs(at - entry.first_at) <= window:
            stamp = (robot_id, at)
            if stamp in entry.stamps:
                return Verdict(True, entry.message_id, False)
            if robot_id not in entry.robots:
                entry.robots.add(robot_id)
                entry.stamps.add(stamp)
                return Verdict(True, entry.message_id, True)
        # A genuine repeat by the same robot, or the same content after the window: the new reference,
        # at the end (the dict is in event-time order).
        del seen[fp]
        seen[fp] = _Seen(message_id, at, {robot_id}, {(robot_id, at)})
        return Verdict(False, message_id, True)

    def prune(self, now: datetime, window: timedelta) -> None:
        horizon = now - window
        while self._seen:
            fp, entry = next(iter(self._seen.items()))
            if entry.first_at >= horizon:
                break
            del self._seen[fp]

    def __len__(self) -> int:
        return len(self._seen)

    def snapshot(self) -> list[tuple[Any, ...]]:
        return [
            (fp, e.message_id, e.first_at, sorted(e.robots), sorted(e.stamps)) for fp, e in self._seen.items()
        ]

    @classmethod
    def restore(cls, rows: list[tuple[Any, ...]]) -> Deduplicator:
        dedup = cls()
        for fp, message_id, first_at, robots, stamps in rows:
            dedup._seen[fp] = _Seen(message_id, first_at, set(robots), {tuple(s) for s in stamps})
        return dedup


class DedupStep:
    """The dedup step of one shard: a message goes on, a copy from another robot becomes a
    RobotSighting (we still learn which robots sit in which group), an exact copy is dropped."""

    def __init__(self, window: timedelta, dedup: Deduplicator | None = None) -> None:
        self.window = window
        self.dedup = dedup or Deduplicator()

    def on_item(
        self, item: ParsedMessage | RobotRecord | ControlRecord | Tick
    ) -> list[Message | RobotRecord | ControlRecord | Tick | RobotSighting]:
        if type(item) is not ParsedMessage:
            if isinstance(item, Tick):
                self.dedup.prune(item.at, self.window)
                return [item]
            if isinstance(item, RobotRecord | ControlRecord):  # nothing to deduplicate: on to the sessions
                return [item]
        msg = item.message
        verdict = self.dedup.observe(item.fp, msg.message_id, msg.robot_id, msg.received_at, self.window)
        if not verdict.is_duplicate:
            return [msg]
        if verdict.robot_is_new:
            return [RobotSighting(msg.session_id, msg.robot_id, msg.received_at, verdict.message_id)]
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"v": 1, "seen": self.dedup.snapshot()}

    @classmethod
    def restore(cls, window: timedelta, data: dict[str, Any]) -> DedupStep:
        return cls(window, Deduplicator.restore(data["seen"]))
