"""The robots part of the sessions step: which robots sit in a conversation (sightings), and each robot's
own records under its "robot:<id>" subject: online/offline, the dispatcher's accepted records and
WorkTool's result callbacks, handed to the command tracker (operators/commands.py: command status and
health, in the robot's `RobotLedger`), and the robot_fault alert (docs/rules.md §4, §8). Pure; the
clock is the sessions step's, passed in.

    a robot reports a conversation's message (or a copy of it) -> robot_joined_session, once per robot
    offline                    -> robot_status; health 0; robot_fault raised
    online                     -> robot_status; health back; its open robot_fault cancelled
    accepted / result callback -> command_sent / command_result (command_callback for a result);
                                  health falling to critical while online raises robot_fault
"""

from __future__ import annotations

from datetime import datetime

from operators.alerts import Alert, AlertRules, Out, Trigger
from operators.commands import CommandTracker, RobotLedger
from operators.shard import RobotRecord
from operators.timers import ShardClock, Timer
from worktool.events import CommandCallback, MonitorEvent, RobotJoinedSession, RobotStatus
from worktool.models import AcceptedBody, ResultCallback


class RobotRules:
    def __init__(self, commands: CommandTracker, alerts: AlertRules) -> None:
        self.commands = commands
        self.alerts = alerts

    @staticmethod
    def seen(
        robots: set[str],
        session_id: str,
        robot_id: str,
        at: datetime,
        group_name: str | None,
        target: str | None,
    ) -> list[MonitorEvent]:
        """A robot reported a message of the conversation: the first time, it joined it."""
        if robot_id in robots:
            return []
        robots.add(robot_id)
        data = RobotJoinedSession.make(group_name=group_name, reply_target=target)
        return [data.at(at, session_id, robot_id)]

    def on_record(
        self, ledger: RobotLedger, alerts: dict[str, Alert], clock: ShardClock, key: str, rec: RobotRecord
    ) -> list[Out]:
        out: list[Out] = []
        tracker = self.commands
        at, robot_id = rec.received_at, rec.robot_id
        if isinstance(rec.result, AcceptedBody):
            out += tracker.accepted(ledger, clock, key, robot_id, rec.result, at)
        elif isinstance(rec.result, ResultCallback) and rec.kind == "result":
            out += tracker.result(ledger, clock, robot_id, rec.result, at)
        elif rec.kind in ("online", "offline"):
            out += tracker.status(ledger, rec.kind == "online", at, robot_id)
        out += self._health_fault(alerts, clock, key, out, robot_id)
        if rec.kind in ("online", "offline") or rec.result is None:
            out.append(RobotStatus.make(status=rec.kind).at(at, robot_id=robot_id))
            if rec.kind == "offline":
                trigger = Trigger(alert_type="robot_fault", subject=key, at=at, robot_id=robot_id,
                                  content="机器人离线")  # fmt: skip
                out += self.alerts.trigger(alerts, clock, trigger)
            elif rec.kind == "online":
                out += self.alerts.cancel_on("robot_online", alerts, clock, at)
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
        return [data.at(at, robot_id=robot_id), *out]

    def result_due(
        self, ledger: RobotLedger, alerts: dict[str, Alert], clock: ShardClock, timer: Timer
    ) -> list[Out]:
        """A command's result clock ran out (operators/commands.py)."""
        robot_id = timer.key.removeprefix("robot:")
        events = self.commands.on_timer(ledger, clock, timer, robot_id)
        return [*events, *self._health_fault(alerts, clock, timer.key, events, robot_id)]

    def _health_fault(
        self, alerts: dict[str, Alert], clock: ShardClock, key: str, events: list[Out], robot_id: str
    ) -> list[Out]:
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
                return self.alerts.trigger(alerts, clock, trigger)
        return []
