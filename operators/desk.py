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

import bisect
import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from operators.alerts import Alert, AlertRules, Out, Trigger
from operators.reports import DayLedger, build_report
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
# What the desk takes from the shards: the tasks, and what the daily report counts.
DESK_EVENTS = frozenset(
    {
        "task_created",
        "task_updated",
        "task_status",
        "task_reminder",
        "user_response",
        "alert_raised",
        "alert_escalated",
    }
)
SNAPSHOT_VERSION = 1
CLOSED = ("completed", "cancelled")
PRIORITY_NAMES = {"urgent": "紧急", "high": "高", "normal": "普通", "low": "低"}
_TICK = timedelta(microseconds=1)
# Order of inputs at the same instant: a day ends before anything of the next one; a closing frees room
# before an opening asks for it.
_KIND_ORDER = {
    "midnight": -1, "control": 0, "task_status": 1, "task_created": 2, "task_updated": 3, "task_reminder": 4,
    "user_response": 5, "alert_raised": 6, "alert_escalated": 7, "duty": 8,
}  # fmt: skip


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

    def __init__(self, config: BusinessConfig, alerts: AlertRules, shards: int, feishu: bool = False) -> None:
        self.config = config
        self.after_sales = config.after_sales
        self.members: dict[str, DeskMember] = {m.name: m for m in config.after_sales.desk}
        self.order = {m.name: i for i, m in enumerate(config.after_sales.desk)}
        self.alerts = alerts
        self.shards = shards
        self.zone = ZoneInfo(config.timezone)
        self.feishu = feishu  # the daily report goes to Feishu too (WORKTOOL_FEISHU_WEBHOOK_URL is set)

    def midnights(self, after: datetime, until: datetime) -> list[datetime]:
        """Every local midnight in (after, until]."""
        out: list[datetime] = []
        day = after.astimezone(self.zone).date() + timedelta(days=1)
        while (moment := datetime.combine(day, time(0), self.zone)) <= until:
            if moment > after:
                out.append(moment)
            day += timedelta(days=1)
        return out

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


class WaitingQueue:
    """The unassigned tasks in the order they are served: urgent first, then oldest (then by id).
    Membership and removal by id in O(log n): a busy day leaves tens of thousands of tasks waiting
    where nobody is on duty, and a list's `in` and `remove` made the desk of a 1 M-record replay
    quadratic (85 s of its 110 s)."""

    def __init__(self, tasks: Iterable[DeskTask] = ()) -> None:
        self._keys: dict[str, tuple[int, datetime, str]] = {}
        self._order: list[tuple[int, datetime, str]] = []  # sorted; a key ends with its task id
        for task in tasks:
            self.add(task)

    def add(self, task: DeskTask) -> None:
        key = (PRIORITY_RANK.get(task.priority, 9), task.opened_at, task.task_id)
        self._keys[task.task_id] = key
        bisect.insort(self._order, key)

    def discard(self, task_id: str) -> bool:
        """Take the task out; False if it was not waiting."""
        key = self._keys.pop(task_id, None)
        if key is None:
            return False
        del self._order[bisect.bisect_left(self._order, key)]
        return True

    def ids(self) -> list[str]:
        """The waiting task ids in serving order (a copy)."""
        return [key[2] for key in self._order]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._keys

    def __len__(self) -> int:
        return len(self._order)


class DeskStep:
    def __init__(self, policy: DeskPolicy) -> None:
        self.policy = policy
        self.clock = ShardClock()
        self.marks: dict[str, datetime] = {}  # shard -> its latest watermark
        self.done_until: datetime | None = None  # everything at or before this has been taken
        # waiting for the watermark: a heap by (time, arrival). A list filtered at each watermark cost
        # 8 % of a sliced replay's parent, whose watermark (the slowest slice's) trails its inputs.
        self.pending: list[tuple[datetime, int, _Due]] = []
        self.arrivals = 0  # inputs ever pended (their arrival order in `pending`)
        self.tasks: dict[str, DeskTask] = {}  # open tasks
        self.members: dict[str, Member] = {}
        self.waiting = WaitingQueue()  # unassigned tasks, in the order they are served
        self._owned: dict[tuple[str | None, str | None], list[str]] = {}  # (session, owner) -> open task ids
        self.assignments = 0
        self.alerts: dict[str, Alert] = {}  # the supervisor's no_staff_available alert
        self.applied: list[str] = []  # control request ids already applied (the newest 64)
        self.day = DayLedger()  # the local day so far (operators/reports.py)

    # -- input -------------------------------------------------------------------------------

    def on_item(self, item: tuple[str, Any] | Any) -> list[Out]:
        """`(shard, value)`: a shard's Tick (or `(shards, Tick)`: several shards' same tick), task event
        or forwarded desk control."""
        shard, value = item
        if isinstance(value, Tick):
            for one in shard if isinstance(shard, tuple) else (shard,):
                previous = self.marks.get(one)
                if previous is None or value.at > previous:
                    self.marks[one] = value.at
            return self._advance()
        due = self._due(value)
        if due is not None:
            if self.done_until is not None and due.at <= self.done_until:
                return self._take([due])  # late: taken now (a replay may order it differently)
            self._pend(due)
        return []

    def _pend(self, due: _Due) -> None:
        self.arrivals += 1
        heapq.heappush(self.pending, (due.at, self.arrivals, due))

    @staticmethod
    def _due(value: Any) -> _Due | None:
        if isinstance(value, ControlRecord):
            return _Due(value.at, "control", value.request_id, value)
        if isinstance(value, MonitorEvent) and value.event in DESK_EVENTS:
            data = value.data
            ident = getattr(data, "task_id", None) or getattr(data, "alert_id", "")
            return _Due(value.event_time, value.event, ident, value)
        return None

    def _advance(self) -> list[Out]:
        if len(self.marks) < self.policy.shards:
            return []  # a shard that never ticked could still send anything
        watermark = min(self.marks.values())
        if self.done_until is not None and watermark <= self.done_until:
            return []
        ready: list[_Due] = []  # by (time, arrival): `_take` orders ties of its key by arrival
        while self.pending and self.pending[0][0] <= watermark:
            ready.append(heapq.heappop(self.pending)[2])
        # Duty starts matter only once a task may wait: from the first input on (so one watermark far
        # ahead, as in the parent of a sliced replay, finds the same moments as many small steps).
        since = self.done_until if self.done_until is not None else min((d.at for d in ready), default=None)
        if since is not None:
            ready += [_Due(at, "duty", "", None) for at in self.policy.duty_starts(since, watermark)]
            ready += [_Due(at, "midnight", "", None) for at in self.policy.midnights(since, watermark)]
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
        kind = due.kind
        if kind == "duty":
            out = self._serve_waiting(due.at)
        elif kind == "midnight":
            return self._day_ends(due.at)
        elif kind == "control":
            out = self._control(due.item)
        elif kind == "task_created":
            out = self._opened(due.item)
        elif kind == "task_status":
            out = self._status(due.item)
        elif kind == "task_reminder":
            out = self._remind(due.item)
        else:
            self._count(due.item)
            return []
        for o in out:  # the desk's own alert counts in the report too
            if isinstance(o, MonitorEvent) and o.event in ("alert_raised", "alert_escalated"):
                self._count(o)
        return out

    # -- the daily report ------------------------------------------------------------------------

    def _count(self, event: MonitorEvent) -> None:
        day, data = self.day, event.data
        if event.event == "task_updated":
            day.needs += 1
        elif event.event == "user_response":
            status = data.status  # type: ignore[attr-defined]
            day.cooperation[status] = day.cooperation.get(status, 0) + 1
        elif event.event == "alert_raised":
            alert_type = data.alert_type  # type: ignore[attr-defined]
            day.alerts[data.alert_id] = (alert_type, data.level, False)  # type: ignore[attr-defined]
            column = {"task_not_followed_up": "not_followed_up", "task_unfinished": "unfinished"}.get(
                alert_type
            )
            if column is not None:
                owner = self._assignee_of(event.session_id, data.alert.user_name)  # type: ignore[attr-defined]
                if owner is not None:
                    day.person(owner)[column] += 1
        elif event.event == "alert_escalated":
            seen = day.alerts.get(data.alert_id)  # type: ignore[attr-defined]
            if seen is not None:
                day.alerts[data.alert_id] = (seen[0], seen[1], True)  # type: ignore[attr-defined]

    def _assignee_of(self, session_id: str | None, user: str | None) -> str | None:
        for task_id in self._owned.get((session_id, user), ()):
            assignee = self.tasks[task_id].assignee
            if assignee:
                return assignee
        return None

    def _own(self, task: DeskTask) -> None:
        self._owned.setdefault((task.session_id, task.user_name), []).append(task.task_id)

    def _disown(self, task: DeskTask) -> None:
        key = (task.session_id, task.user_name)
        owned = self._owned.get(key)
        if owned is not None and task.task_id in owned:
            owned.remove(task.task_id)
            if not owned:
                del self._owned[key]

    def _day_ends(self, midnight: datetime) -> list[Out]:
        policy = self.policy
        day = (midnight - _TICK).astimezone(policy.zone).date().isoformat()
        still_open = [(t.task_type, t.opened_at, t.assignee) for t in self.tasks.values()]
        ledger, self.day = self.day, DayLedger()
        if ledger.is_empty() and not still_open:
            return []  # nothing happened and nothing is open: no report (a replay far past its day)
        report = build_report(ledger, day, policy.config, still_open, midnight)
        out: list[Out] = [report.at(midnight, DESK_KEY)]
        target = policy.config.alerts.notifications.staff_target
        out += self._notice(f"daily_report:{day}", midnight, "daily_report", "wecom", target, report.summary)
        if policy.feishu:
            out += self._notice(
                f"daily_report:{day}", midnight, "daily_report", "feishu", "feishu", report.summary
            )
        return out

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
        self._own(task)
        self.day.needs += 1
        self.day.opened.append(task.task_id)
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
        self._disown(task)
        if data.status == "completed":
            minutes = (event.event_time - task.opened_at).total_seconds() / 60
            self.day.completed[task.task_id] = minutes
            kind = self.policy.after_sales.task_type_by_code.get(task.task_type)
            if kind is None or minutes <= kind.target_minutes:
                self.day.within_target += 1
            if task.assignee:
                self.day.person(task.assignee)["completed"] += 1
        else:
            self.day.cancelled += 1
        if self.waiting.discard(task.task_id):
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
        self.day.cooperation["timeout"] = self.day.cooperation.get("timeout", 0) + 1
        if task.assignee:
            self.day.person(task.assignee)["reminders"] += 1
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
        self.waiting.add(task)
        content = (
            f"{self._label(task)}任务无人可接（{self._where(task)}），等待中的任务 {len(self.waiting)} 个"
        )
        trigger = Trigger(
            alert_type="no_staff_available", subject=DESK_KEY, at=at, session_id=DESK_KEY, content=content
        )
        return list(self.policy.alerts.trigger(self.alerts, self.clock, trigger))

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
        self.day.assigned.add(task.task_id)
        self.day.person(name)["assigned"] += 1
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
        for task_id in self.waiting.ids():
            task = self.tasks[task_id]
            name = self._choose(task, at)
            if name is None:
                break  # who may take a task does not depend on the task (a skill only ranks): nobody now
            self.waiting.discard(task_id)
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
            if self.waiting.discard(task.task_id):
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
        cause_id = f"{task.task_id}:{task.assignee or ''}"
        return self._notice(cause_id, at, purpose, "wecom", target, content, at_list, cause=task.task_id)

    def _notice(
        self, ident: str, at: datetime, purpose: str, channel: str, target: str, content: str,
        at_list: list[str] | None = None, cause: str | None = None,
    ) -> list[Out]:  # fmt: skip
        robot = self.policy.alerts.notify_robot if channel == "wecom" else None
        command_id = "cmd_" + _digest(ident, purpose, channel, iso(at))
        command = construct(CommandRecord,
            command_id=command_id, channel=channel, robot_id=robot, target=target, content=content,
            at_list=list(at_list or []), due_time=at, cause=CommandCause(event=purpose), reply=None,
        )  # fmt: skip
        created = CommandCreated.make(
            command_id=command_id, channel=channel, robot_id=robot, target=target, content=content,
            at_list=list(at_list or []), due_time=at, cause_event=purpose, cause_id=cause or ident,
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
            "pending": [
                (d.at, d.kind, d.ident, _plain_item(d.item)) for d in self._pending_in_arrival_order()
            ],
            "tasks": {tid: _task_plain(t) for tid, t in self.tasks.items()},
            "members": {n: (m.status, list(m.open_tasks), m.last_assigned) for n, m in self.members.items()},
            "waiting": self.waiting.ids(),
            "assignments": self.assignments,
            "alerts": {k: a.snapshot() for k, a in self.alerts.items()},
            "applied": list(self.applied),
            "day": self.day.plain(),
        }

    def _pending_in_arrival_order(self) -> list[_Due]:
        return [due for _, _, due in sorted(self.pending, key=lambda p: p[1])]

    @classmethod
    def restore(cls, policy: DeskPolicy, data: dict[str, Any]) -> DeskStep:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown desk snapshot version {data.get('v')!r}")
        step = cls(policy)
        step.clock = ShardClock.restore(data["clock"])
        step.marks = dict(data["marks"])
        step.done_until = data["done_until"]
        for a, kind, ident, item in data["pending"]:
            step._pend(_Due(a, kind, ident, _item_of(kind, item)))
        step.tasks = {tid: DeskTask(**t) for tid, t in data["tasks"].items()}
        for task in step.tasks.values():
            step._own(task)
        step.members = {n: Member(s, list(o), last) for n, (s, o, last) in data["members"].items()}
        step.waiting = WaitingQueue(step.tasks[tid] for tid in data["waiting"])
        step.assignments = data["assignments"]
        step.alerts = {k: Alert.restore(a) for k, a in data["alerts"].items()}
        step.applied = list(data["applied"])
        step.day = DayLedger(**data["day"])
        return step


def _plain_item(item: Any) -> Any:
    return item.to_json() if isinstance(item, MonitorEvent) else item


def _item_of(kind: str, item: Any) -> Any:
    return parse_event(item) if kind not in ("control", "duty") else item


def _task_plain(task: DeskTask) -> dict[str, Any]:
    return {f: getattr(task, f) for f in DeskTask.__slots__}  # type: ignore[attr-defined]


__all__ = ["DESK_ACTIONS", "DESK_EVENTS", "DESK_KEY", "DeskPolicy", "DeskStep", "DeskTask", "Member"]
