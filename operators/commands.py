"""Commands after they leave the dataflow, and robot health (docs/rules.md §6, §8). Pure.

Lives with the robot that sends them ("robot:<id>" subject): its dispatcher's `accepted` records and
WorkTool's result callbacks both arrive under that robot.

    accepted, errorCode 0        -> command_sent for each command of the request; result clock starts
    accepted, errorCode -2       -> command_result unknown (the dispatcher lost track across a restart)
    accepted, other errorCode    -> command_result failed (the submission failed after its retries)
    result callback, errorCode 0 -> command_result completed; other errorCode -> failed (errorReason)
    no result `result_timeout_s` after acceptance -> command_timeout; then `lookups` more waits of
        `lookup_interval_s` (each a command_timeout with its count); then command_result unknown

WorkTool calls back once per command of a request, all with the request's messageId: the n-th callback
of a messageId is taken to be the n-th command of the request (list order).

Health (§8): score = 100 - min(5 x failures, 30) - min(10 x consecutive failures, 40) - 20 if the last
failure was under 5 min ago (10 if under 30 min); offline -> 0. Bands: >= 80 healthy, >= 50 warning,
else critical; falling to critical raises robot_fault. A success resets the consecutive count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from operators.timers import ShardClock, Timer
from worktool.config import CommandConfig, HealthConfig
from worktool.events import CommandResult, CommandSent, CommandTimeout, MonitorEvent, RobotHealth
from worktool.models import AcceptedBody, ResultCallback

RESULT_DUE = "command_result_due"
UNKNOWN_AFTER_RESTART = -2  # errorCode of an accepted record whose outcome the dispatcher lost
# Pseudo-robots the dispatcher records webhook sends and robot-less commands under: no health.
NOT_ROBOTS = ("webhook:", "dispatcher:")
RECENT_KEPT = 512  # commands remembered after their end, so a repeated accepted record changes nothing


def robot_fault(code: int) -> bool:
    """Whether a failed submission says something about the robot: WorkTool's own error codes do
    (101011, 201102, ...); an HTTP status, a refused connection or "not called" (negative) do not."""
    return code >= 1000


class AwaitedResult(NamedTuple):
    """A command sent and waiting for its result callback."""

    message_id: str  # WorkTool's messageId of the request
    timer: int  # its result clock


@dataclass(slots=True)
class RobotLedger:
    online: bool = True
    send_failures: int = 0
    consecutive: int = 0
    last_failure_at: datetime | None = None
    score: float = 100.0
    band: str = "healthy"
    waiting: dict[str, AwaitedResult] = field(default_factory=dict)  # by command id
    batches: dict[str, list[str]] = field(default_factory=dict)  # messageId -> commands still unresolved
    ended: list[str] = field(default_factory=list)  # the latest commands that reached their end

    def snapshot(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        # Copies: the ledger goes on changing after the snapshot was taken.
        data["waiting"] = {k: tuple(v) for k, v in self.waiting.items()}  # plain tuples
        data["batches"] = {k: list(v) for k, v in self.batches.items()}
        data["ended"] = list(self.ended)
        return data

    @classmethod
    def restore(cls, data: dict[str, Any]) -> RobotLedger:
        return cls(**{**data, "waiting": {k: AwaitedResult(*v) for k, v in data["waiting"].items()}})


class CommandTracker:
    def __init__(self, commands: CommandConfig, health: HealthConfig) -> None:
        self.c = commands
        self.h = health
        self._timeout = timedelta(seconds=commands.result_timeout_s)
        self._lookup = timedelta(seconds=commands.lookup_interval_s)

    # -- outcomes ------------------------------------------------------------------------------

    def accepted(
        self,
        ledger: RobotLedger,
        clock: ShardClock,
        key: str,
        robot_id: str,
        body: AcceptedBody,
        at: datetime,
    ) -> list[MonitorEvent]:
        # The dispatcher may record the same answer twice (a crash between its record and its commit).
        fresh = [c for c in body.commandIds if c not in ledger.waiting and c not in ledger.ended]
        if body.errorCode != 0:
            status = "unknown" if body.errorCode == UNKNOWN_AFTER_RESTART else "failed"
            out = [self._result(c, status, body.errorCode, body.errorReason, at, robot_id) for c in fresh]
            self._end(ledger, fresh)
            faulty = bool(fresh) and (status == "unknown" or robot_fault(body.errorCode))
            return out + (self._outcome(ledger, False, at, robot_id) if faulty else [])
        out: list[MonitorEvent] = []
        for command_id in fresh:
            data = CommandSent.make(
                command_id=command_id, robot_id=robot_id, worktool_message_id=body.messageId or None
            )
            out.append(data.at(at, robot_id=robot_id))
            if body.channel == "wecom" and body.messageId:
                timer = clock.schedule(at + self._timeout, key, RESULT_DUE, (command_id, 0))
                ledger.waiting[command_id] = AwaitedResult(body.messageId, timer)
            else:  # phone and SMS webhooks and Feishu call nothing back: accepted is their end
                out.append(self._result(command_id, "completed", 0, "", at, robot_id))
                self._end(ledger, [command_id])
        if body.channel == "wecom" and body.messageId and fresh:
            ledger.batches.setdefault(body.messageId, []).extend(fresh)
        return out

    @staticmethod
    def _end(ledger: RobotLedger, commands: list[str]) -> None:
        ledger.ended = [*ledger.ended, *commands][-RECENT_KEPT:]

    def result(
        self, ledger: RobotLedger, clock: ShardClock, robot_id: str, body: ResultCallback, at: datetime
    ) -> list[MonitorEvent]:
        pending = ledger.batches.get(body.messageId)
        if not pending:
            return []  # a result of a command we do not track (sent by someone else, or long resolved)
        command_id = pending.pop(0)
        if not pending:
            del ledger.batches[body.messageId]
        self._end(ledger, [command_id])
        awaited = ledger.waiting.pop(command_id, None)
        if awaited is not None:
            clock.cancel(awaited.timer)
        ok = body.errorCode == 0
        out = [
            self._result(
                command_id, "completed" if ok else "failed", body.errorCode, body.errorReason, at, robot_id
            )
        ]
        return out + self._outcome(ledger, ok, at, robot_id)

    def on_timer(
        self, ledger: RobotLedger, clock: ShardClock, timer: Timer, robot_id: str
    ) -> list[MonitorEvent]:
        command_id, lookups = timer.payload
        awaited = ledger.waiting.get(command_id)
        if awaited is None or awaited.timer != timer.seq:
            return []
        if lookups < self.c.lookups:
            data = CommandTimeout.make(command_id=command_id, lookups=lookups)
            next_timer = clock.schedule(
                timer.due + self._lookup, timer.key, RESULT_DUE, (command_id, lookups + 1)
            )
            ledger.waiting[command_id] = AwaitedResult(awaited.message_id, next_timer)
            return [data.at(timer.due, robot_id=robot_id)]
        del ledger.waiting[command_id]
        self._end(ledger, [command_id])
        batch = ledger.batches.get(awaited.message_id)
        if batch is not None and command_id in batch:
            batch.remove(command_id)
            if not batch:
                del ledger.batches[awaited.message_id]
        reason = f"no result {self.c.result_timeout_s:g} s after acceptance nor after {lookups} look-ups"
        out = [self._result(command_id, "unknown", None, reason, timer.due, robot_id)]
        return out + self._outcome(ledger, False, timer.due, robot_id)

    @staticmethod
    def _result(
        command_id: str, status: str, code: int | None, reason: str | None, at: datetime, robot_id: str
    ) -> MonitorEvent:
        data = CommandResult.make(
            command_id=command_id, status=status, error_code=code, error_reason=reason or None
        )
        return data.at(at, robot_id=robot_id)

    # -- health --------------------------------------------------------------------------------

    def _outcome(self, ledger: RobotLedger, ok: bool, at: datetime, robot_id: str) -> list[MonitorEvent]:
        if robot_id.startswith(NOT_ROBOTS):
            return []
        if ok:
            ledger.consecutive = 0
        else:
            ledger.send_failures += 1
            ledger.consecutive += 1
            ledger.last_failure_at = at
        return self.health(ledger, at, robot_id)

    def status(self, ledger: RobotLedger, online: bool, at: datetime, robot_id: str) -> list[MonitorEvent]:
        ledger.online = online
        if robot_id.startswith(NOT_ROBOTS):
            return []
        return self.health(ledger, at, robot_id)

    def score(self, ledger: RobotLedger, at: datetime) -> float:
        if not ledger.online:
            return 0.0
        h = self.h
        score = 100 - min(h.failure_weight * ledger.send_failures, h.failure_cap)
        score -= min(h.consecutive_weight * ledger.consecutive, h.consecutive_cap)
        if ledger.last_failure_at is not None:
            since = at - ledger.last_failure_at
            if since < timedelta(minutes=h.recent_minutes):
                score -= h.recent_penalty
            elif since < timedelta(minutes=h.older_minutes):
                score -= h.older_penalty
        return max(0.0, float(score))

    def band(self, score: float) -> str:
        if score >= self.h.healthy_from:
            return "healthy"
        return "warning" if score >= self.h.warning_from else "critical"

    def health(self, ledger: RobotLedger, at: datetime, robot_id: str) -> list[MonitorEvent]:
        """A robot_health event when the score or band changed."""
        score = self.score(ledger, at)
        band = self.band(score)
        if (score, band) == (ledger.score, ledger.band):
            return []
        ledger.score, ledger.band = score, band
        data = RobotHealth.make(
            score=score, band=band, online=ledger.online, send_failures=ledger.send_failures,
            consecutive_failures=ledger.consecutive, last_failure_at=ledger.last_failure_at,
        )  # fmt: skip
        return [data.at(at, robot_id=robot_id)]
