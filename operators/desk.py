"""The after-sales desk (docs/rules.md §7): who takes which task. One stateful step with one key, because
assignment needs every staff member's load across every conversation, while the conversations are spread
over the shards.

Inputs, all from the sessions step's output (so each arrives after what its shard did before it):
    task_created / task_status / task_reminder events   the tasks of every shard
    desk control records (staff_status, assign_task)     forwarded by the shard that holds the desk's key
    Tick per shard                                       that shard's watermark

The desk acts in event time only: an input waits until every shard's watermark has passed its time, then
the desk takes everything due in (time, kind, id) order, together with its own timers (the supervisor
alert's reminders and expiry) and the moments a member comes on duty. So what it decides depends on the
inputs and their times, never on how the shards' outputs interleave on the way (a replay, a cluster or a
live run give the same assignments).

Without desk members in the configuration (`after_sales.desk`), nothing is assigned automatically and no
task waits: manual assignment through the console still works.

Auto-assignment of a task (docs/rules.md §7): among the desk members on duty, not offline and below their
maximum of open tasks: online before busy, then the fewest open tasks, then the task type's skill, then
round-robin (the one assigned least recently, then the configuration's order). Nobody available: the task
waits (urgent first, then oldest) and the supervisor's `no_staff_available` alert is triggered (each
waiting task is a repeat: §4 escalation); it is cancelled (`problem_solved`) when no task waits any more.
The assignee is told through the notify robot (an @ in the staff group), as is a reminder.

The desk's events carry the session id "desk": they belong to the desk and are ordered by its watermark,
not with the conversation's own events (the task's row in after_sales_tasks says whose it is). Its alert
lives here too, so a manual cancel or escalation of it (a control record of session "desk") is applied
here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from operators.alerts import Alert, AlertRules, Out, Trigger
from operators.timers import ShardClock, Tick
from worktool.config import PRIORITY_RANK, BusinessConfig, DeskMember
from worktool.events import (
    CommandCreated,
    MonitorEvent,
    StaffStatus,
    TaskAssigned,
    TaskCreated,
    TaskReminder,
    TaskStatus,
    construct,
    parse_event,
)
from worktool.models import DESK_ACTIONS, DESK_SESSION, CommandCause, CommandRecord, ControlRecord, iso

DESK_KEY = DESK_SESSION
DESK_EVENTS = frozenset({"task_created", "task_status", "task_reminder"})
SNAPSHOT_VERSION = 1
CLOSED = ("completed", "cancelled")
PRIORITY_NAMES = {"urgent": "紧急", "high": "高", "normal": "普通", "low": "低"}
_TICK = timedelta(microseconds=1)
_KIND_ORDER = {"control": 0, "task_status": 1, "task_created": 2, "task_reminder": 3, "duty": 4}


@dataclass(slots=True)
class DeskTask:
    task_id: str
    task_type: str
    priority: str
    opened_at: datetime
    session_id: str | None = None
    robot_id: str | None = None
    user_name: str | None = None
    group_name: str | None = None
    description: str | None = None
    status: str = "pending"
    assignee: str | None = None


@dataclass(slots=True)
class Member:
    status: str = "online"  # online | busy | offline (PUT /api/staff/{name}/status)
    open_tasks: list[str] = field(default_factory=list)
    last_assigned: int = 0  # the desk's assignment counter when this member last got a task (0: never)


@dataclass(frozen=True, slots=True)
class _Due:
    """One input the desk will take once the watermark passes `at`."""

    at: datetime
    kind: str
    ident: str
    item: Any


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


class DeskPolicy:
    """The configuration the desk applies (not part of its snapshot: a changed roster applies at once)."""

    def __init__(self, config: BusinessConfig, alerts: AlertRules, shards: int) -> None:
        self.config = config
        self.after_sales = config.after_sales
        self.members: dict[str, DeskMember] = {m.name: m for m in config.after_sales.desk}
        self.order = {m.name: i for i, m in enumerate(config.after_sales.desk)}
        self.alerts = alerts
        self.shards = shards
        self.zone = ZoneInfo(config.timezone)

    def on_duty(self, member: DeskMember, at: datetime) -> bool:
        if not member.on_duty:
            return True
        now = at.astimezone(self.zone).time()
        for start, end in member.duty_ranges:
            if (start <= now < end) if start < end else (now >= start or now < end):
                return True
        return False

    def duty_starts(self, after: datetime, until: datetime) -> list[datetime]:
        """Every moment in (after, until] at which some member's duty begins (sorted, distinct)."""
        if until <= after:
            return []
        starts: set[datetime] = set()
        day = after.astimezone(self.zone).date()
        last = until.astimezone(self.zone).date()
        begin_times = {start for m in self.members.values() for start, _ in m.duty_ranges}
        while day <= last and begin_times:
            for start in begin_times:
                moment = datetime.combine(day, start, self.zone)
                if after < moment <= until:
                    starts.add(moment)
            day += timedelta(days=1)
        return sorted(starts)


class DeskStep:
    def __init__(self, policy: DeskPolicy) -> None:
        self.policy = policy
        self.clock = ShardClock()
        self.marks: dict[str, datetime] = {}  # shard -> its latest watermark
        self.done_until: datetime | None = None  # everything at or before this has been taken
        self.pending: list[_Due] = []  # waiting for the watermark
        self.tasks: dict[str, DeskTask] = {}  # open tasks
        self.members: dict[str, Member] = {}
        self.waiting: list[str] = []  # unassigned task ids, in the order they are served
        self.assignments = 0
        self.alerts: dict[str, Alert] = {}  # the supervisor's no_staff_available alert
        self.applied: list[str] = []  # control request ids already applied (the newest 64)

    # -- input -------------------------------------------------------------------------------

    def on_item(self, item: tuple[str, Any] | Any) -> list[Out]:
        """`(shard, value)`: a shard's Tick, task event or forwarded desk control."""
        shard, value = item
        if isinstance(value, Tick):
            previous = self.marks.get(shard)
            if previous is None or value.at > previous:
                self.marks[shard] = value.at
            return self._advance()
        due = self._due(value)
        if due is not None:
            if self.done_until is not None and due.at <= self.done_until:
                return self._take([due])  # late: taken now (a replay may order it differently)
            self.pending.append(due)
        return []

    @staticmethod
    def _due(value: Any) -> _Due | None:
        if isinstance(value, ControlRecord):
            return _Due(value.at, "control", value.request_id, value)
        if isinstance(value, MonitorEvent) and value.event in _KIND_ORDER:
            return _Due(value.event_time, value.event, value.data.task_id, value)  # type: ignore[attr-defined]
        return None

    def _advance(self) -> list[Out]:
        if len(self.marks) < self.policy.shards:
            return []  # a shard that never ticked could still send anything
        watermark = min(self.marks.values())
        if self.done_until is not None and watermark <= self.done_until:
            return []
        ready = [d for d in self.pending if d.at <= watermark]
        self.pending = [d for d in self.pending if d.at > watermark]
        # Duty starts matter only once a task may wait: from the first input on (so one watermark far
        # ahead, as in the parent of a sliced replay, finds the same moments as many small steps).
        since = self.done_until if self.done_until is not None else min((d.at for d in ready), default=None)
        if since is not None:
            ready += [_Due(at, "duty", "", None) for at in self.policy.duty_starts(since, watermark)]
        self.done_until = watermark
        return self._take(ready, watermark)

    def _take(self, ready: list[_Due], watermark: datetime | None = None) -> list[Out]:
        ready.sort(key=lambda d: (d.at, _KIND_ORDER[d.kind], d.ident))
        out: list[Out] = []
        for due in ready:
            out += self._timers(due.at, inclusive=False)
            out += self._apply(due)
        if watermark is not None:
            out += self._timers(watermark, inclusive=True)
        return out

    def _timers(self, until: datetime, inclusive: bool) -> list[Out]:
        """The desk's own timers due before `until` (or at it, `inclusive`), in (due, seq) order."""
        out: list[Out] = []
        self.clock.advance(until)
        last = until if inclusive else until - _TICK
        while (timer := self.clock.next_due(last)) is not None:
            out += self.policy.alerts.on_timer(self.alerts, self.clock, timer)
        return out

    def _apply(self, due: _Due) -> list[Out]:
        if due.kind == "duty":
            return self._serve_waiting(due.at)
        if due.kind == "control":
            return self._control(due.item)
        event: MonitorEvent = due.item
        if due.kind == "task_created":
            return self._opened(event)
        if due.kind == "task_status":
            return self._status(event)
        return self._remind(event)

    # -- tasks ---------------------------------------------------------------------------------

    def _opened(self, event: MonitorEvent) -> list[Out]:
        data: TaskCreated = event.data  # type: ignore[assignment]
        if data.task_id in self.tasks:
            return []
        task = DeskTask(
            task_id=data.task_id, task_type=data.task_type, priority=data.priority, opened_at=event.event_time,
            session_id=event.session_id, robot_id=event.robot_id, user_name=data.user_name,
            group_name=data.group_name, description=data.description,
        )  # fmt: skip
        self.tasks[task.task_id] = task
        return self._assign_or_wait(task, event.event_time)

    def _status(self, event: MonitorEvent) -> list[Out]:
        data: TaskStatus = event.data  # type: ignore[assignment]
        task = self.tasks.get(data.task_id)
        if task is None:
            return []
        task.status = data.status
        if data.status not in CLOSED:
            return []
        del self.tasks[task.task_id]
        if task.task_id in self.waiting:
            self.waiting.remove(task.task_id)
            return self._waiting_changed(event.event_time)
        if task.assignee is not None:
            member = self.members.get(task.assignee)
            if member is not None and task.task_id in member.open_tasks:
                member.open_tasks.remove(task.task_id)
            return self._serve_waiting(event.event_time)  # room for a waiting task
        return []

    def _remind(self, event: MonitorEvent) -> list[Out]:
        data: TaskReminder = event.data  # type: ignore[assignment]
        task = self.tasks.get(data.task_id)
        if task is None:
            return []
        who = f"@{task.assignee} " if task.assignee else ""
        text = (
            f"{who}【跟进提醒】{self._where(task)}的「{self._label(task)}」任务：用户已 {data.minutes:g} 分钟"
            f"未回应，请再次联系（任务 {task.task_id}）"
        )
        return self._command(task, event.event_time, "task_reminder", text)

    def _assign_or_wait(self, task: DeskTask, at: datetime) -> list[Out]:
        if not self.policy.members:
            return []  # no desk configured: tasks are taken by hand (no queue, no supervisor alert)
        name = self._choose(task, at)
        if name is not None:
            return self._assign(task, name, at, auto=True)
        self.waiting.append(task.task_id)
        self.waiting.sort(key=lambda tid: self._queue_key(self.tasks[tid]))
        content = (
            f"{self._label(task)}任务无人可接（{self._where(task)}），等待中的任务 {len(self.waiting)} 个"
        )
        trigger = Trigger(
            alert_type="no_staff_available", subject=DESK_KEY, at=at, session_id=DESK_KEY, content=content
        )
        return list(self.policy.alerts.trigger(self.alerts, self.clock, trigger))

    @staticmethod
    def _queue_key(task: DeskTask) -> tuple[int, datetime, str]:
        return (PRIORITY_RANK.get(task.priority, 9), task.opened_at, task.task_id)

    def _choose(self, task: DeskTask, at: datetime) -> str | None:
        policy = self.policy
        skill = policy.after_sales.task_type_by_code.get(task.task_type)
        wanted = skill.skill if skill is not None else None
        best: tuple[Any, ...] | None = None
        chosen: str | None = None
        for name, config in policy.members.items():
            member = self.members.get(name) or Member()
            if member.status == "offline" or len(member.open_tasks) >= config.max_open_tasks:
                continue
            if not policy.on_duty(config, at):
                continue
            key = (
                member.status != "online",
                len(member.open_tasks),
                wanted is not None and wanted not in config.skills,
                member.last_assigned,
                policy.order[name],
            )
            if best is None or key < best:
                best, chosen = key, name
        return chosen

    def _assign(
        self, task: DeskTask, name: str, at: datetime, auto: bool, by: str | None = None
    ) -> list[Out]:
        previous = task.assignee
        if previous is not None and previous in self.members:
            old = self.members[previous]
            if task.task_id in old.open_tasks:
                old.open_tasks.remove(task.task_id)
        member = self.members.setdefault(name, Member())
        member.open_tasks.append(task.task_id)
        self.assignments += 1
        member.last_assigned = self.assignments
        task.assignee = name
        waited = max(0.0, (at - task.opened_at).total_seconds() / 60)
        out: list[Out] = [
            TaskAssigned.make(
                task_id=task.task_id, assignee=name, auto=auto, previous=previous,
                open_tasks=len(member.open_tasks), waited_minutes=round(waited, 3), by=by,
            ).at(at, DESK_KEY)
        ]  # fmt: skip
        if task.status == "pending":
            task.status = "assigned"
            status = TaskStatus.make(task_id=task.task_id, status="assigned", reason="auto" if auto else "manual",
                                     by=by or DESK_KEY)  # fmt: skip
            out.append(status.at(at, DESK_KEY))
        said = f"：{task.description[:80]}" if task.description else ""
        text = (
            f"@{name} 新售后任务「{self._label(task)}」（{PRIORITY_NAMES.get(task.priority, task.priority)}）"
            f"{self._where(task)}{said}（任务 {task.task_id}）"
        )
        return out + self._command(task, at, "task_assigned", text, at_list=[name])

    def _serve_waiting(self, at: datetime) -> list[Out]:
        if not self.waiting:
            return []
        out: list[Out] = []
        for task_id in list(self.waiting):
            task = self.tasks[task_id]
            name = self._choose(task, at)
            if name is None:
                continue  # a task needing a busier skill waits; a later one may still fit someone
            self.waiting.remove(task_id)
            out += self._assign(task, name, at, auto=True)
        return out + self._waiting_changed(at)

    def _waiting_changed(self, at: datetime) -> list[Out]:
        if self.waiting:
            return []
        out: list[Out] = []
        for alert in list(self.alerts.values()):
            if alert.is_open:
                out += self.policy.alerts.cancel(alert, self.clock, at, "problem_solved", DESK_KEY)
        return out

    # -- control records -----------------------------------------------------------------------

    def _control(self, rec: ControlRecord) -> list[Out]:
        if rec.request_id in self.applied:
            return []
        self.applied = [*self.applied[-63:], rec.request_id]
        if rec.action == "staff_status" and rec.staff_name and rec.staff_status:
            member = self.members.setdefault(rec.staff_name, Member())
            if member.status == rec.staff_status:
                return []
            member.status = rec.staff_status
            out: list[Out] = [
                StaffStatus.make(name=rec.staff_name, status=rec.staff_status, by=rec.actor).at(
                    rec.at, DESK_KEY
                )
            ]
            if rec.staff_status == "online":
                out += self._serve_waiting(rec.at)
            return out
        if rec.action in ("cancel_alert", "escalate_alert"):
            alerts = self.policy.alerts
            alert = alerts.find(self.alerts, rec.alert_id or "")
            if alert is None:
                return []
            if rec.action == "cancel_alert":
                return list(alerts.cancel(alert, self.clock, rec.at, "manual", by=rec.actor))
            return list(
                alerts.escalate(self.alerts, self.clock, alert.alert_id, rec.at, f"manual:{rec.actor}")
            )
        if rec.action == "assign_task" and rec.task_id and rec.staff_name:
            task = self.tasks.get(rec.task_id)
            if task is None or task.assignee == rec.staff_name:
                return []
            if task.task_id in self.waiting:
                self.waiting.remove(task.task_id)
                return self._assign(
                    task, rec.staff_name, rec.at, auto=False, by=rec.actor
                ) + self._waiting_changed(rec.at)
            return self._assign(task, rec.staff_name, rec.at, auto=False, by=rec.actor)
        return []

    # -- notices -------------------------------------------------------------------------------

    def _label(self, task: DeskTask) -> str:
        config = self.policy.after_sales.task_type_by_code.get(task.task_type)
        return config.label if config is not None else task.task_type

    @staticmethod
    def _where(task: DeskTask) -> str:
        return " ".join(p for p in (task.group_name or "", task.user_name or "") if p)

    def _command(
        self, task: DeskTask, at: datetime, purpose: str, content: str, at_list: list[str] | None = None
    ) -> list[Out]:
        target = self.policy.config.alerts.notifications.staff_target
        robot = self.policy.alerts.notify_robot
        command_id = "cmd_" + _digest(task.task_id, purpose, task.assignee or "", iso(at))
        cause = CommandCause(event=purpose, message_id=None, alert_id=None)
        command = construct(CommandRecord,
            command_id=command_id, channel="wecom", robot_id=robot, target=target, content=content,
            at_list=list(at_list or []), due_time=at, cause=cause,
        )  # fmt: skip
        created = CommandCreated.make(
            command_id=command_id, channel="wecom", robot_id=robot, target=target, content=content,
            at_list=list(at_list or []), due_time=at, cause_event=purpose, cause_id=task.task_id,
        )  # fmt: skip
        return [command, created.at(at, DESK_KEY)]

    # -- snapshot ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "clock": self.clock.snapshot(),
            "marks": dict(self.marks),
            "done_until": self.done_until,
            # events as their JSON (their typed envelopes are built at run time and do not pickle)
            "pending": [(d.at, d.kind, d.ident, _plain_item(d.item)) for d in self.pending],
            "tasks": {tid: _task_plain(t) for tid, t in self.tasks.items()},
            "members": {n: (m.status, list(m.open_tasks), m.last_assigned) for n, m in self.members.items()},
            "waiting": list(self.waiting),
            "assignments": self.assignments,
            "alerts": {k: a.snapshot() for k, a in self.alerts.items()},
            "applied": list(self.applied),
        }

    @classmethod
    def restore(cls, policy: DeskPolicy, data: dict[str, Any]) -> DeskStep:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown desk snapshot version {data.get('v')!r}")
        step = cls(policy)
        step.clock = ShardClock.restore(data["clock"])
        step.marks = dict(data["marks"])
        step.done_until = data["done_until"]
        step.pending = [
            _Due(a, kind, ident, _item_of(kind, item)) for a, kind, ident, item in data["pending"]
        ]
        step.tasks = {tid: DeskTask(**t) for tid, t in data["tasks"].items()}
        step.members = {n: Member(s, list(o), last) for n, (s, o, last) in data["members"].items()}
        step.waiting = list(data["waiting"])
        step.assignments = data["assignments"]
        step.alerts = {k: Alert.restore(a) for k, a in data["alerts"].items()}
        step.applied = list(data["applied"])
        return step


def _plain_item(item: Any) -> Any:
    return item.to_json() if isinstance(item, MonitorEvent) else item


def _item_of(kind: str, item: Any) -> Any:
    return parse_event(item) if kind not in ("control", "duty") else item


def _task_plain(task: DeskTask) -> dict[str, Any]:
    return {f: getattr(task, f) for f in DeskTask.__slots__}  # type: ignore[attr-defined]


__all__ = ["DESK_ACTIONS", "DESK_EVENTS", "DESK_KEY", "DeskPolicy", "DeskStep", "DeskTask", "Member"]
