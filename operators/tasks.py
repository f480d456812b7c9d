"""The after-sales tasks of a conversation (docs/rules.md §7). Pure; the clock is the sessions step's,
passed in. Who takes a task is the desk's business (operators/desk.py: it sees every shard's tasks); this
part follows a task within its conversation:

    an owner's chat_after_sales message (type and priority by the configured keywords), or a
    chat_private_operation message (private_operation, urgent), or the console (create_task)
        -> task_created, status pending; the task_unfinished clock starts (alerts.task_unfinished_minutes)
        -> the same need again while that task is open (same owner, same type) -> task_updated
    staff @ an owner who has an open task (a staff_at_user message)
        -> their tasks wait for them (waiting_user); the reminder clock (after_sales.reminder_minutes:
           task_reminder, the desk tells the assignee) and the response clock
           (alerts.user_not_cooperating_minutes: user_not_cooperating) start
        an @ of an owner with no open task (a greeting, a closing message) starts nothing
    the owner speaks while waited for -> both clocks stop; user_response (a refusal word wins); if they
        responded, the tasks are in_progress and staff must follow up within
        alerts.task_not_followed_up_minutes (task_not_followed_up) - any staff message does
    the owner says it is solved / a [已解决] command / the console (update_task) -> completed (the owner's
        alerts are cancelled, problem_solved); the console may cancel a task instead

The sessions step calls only `TaskRules`' methods with the session's `TaskBook`; this module alone
knows what a task is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.alerts import Alert, AlertRules, Out, Trigger
from operators.rules import ResponseDetector
from operators.timers import ShardClock, Timer
from worktool.config import PRIVATE_OPERATION_TASK, BusinessConfig, TaskTypeConfig
from worktool.events import TaskCreated, TaskReminder, TaskStatus, TaskUpdated, UserResponse
from worktool.models import ControlRecord, Message

NOT_COOPERATING = "user_not_cooperating"
NOT_FOLLOWED_UP = "task_not_followed_up"
TASK_UNFINISHED = "task_unfinished"
TASK_REMINDER = "task_reminder"
# The timer kinds `on_timer` handles that raise an alert when they run out, and the alert.
TIMER_ALERTS = {
    NOT_COOPERATING: "user_not_cooperating",
    NOT_FOLLOWED_UP: "task_not_followed_up",
    TASK_UNFINISHED: "task_unfinished",
}
TIMER_KINDS = (*TIMER_ALERTS, TASK_REMINDER)  # every kind the sessions step hands to `on_timer`
# The message types that open a task.
OPENS_TASK = ("chat_after_sales", "chat_private_operation")


def contains_any(text: str, words: Iterable[str]) -> bool:
    """`any(w in text for w in words)` without a generator (the per-message path)."""
    for w in words:  # noqa: SIM110 (a loop: no generator per call)
        if w in text:
            return True
    return False


@dataclass(slots=True)
class Task:
    """An open after-sales task (a closed one leaves the book)."""

    user: str  # the owner it is for
    task_type: str
    opened_at: datetime
    timer: int | None  # its task_unfinished clock (None once it ran out: the task stays open)
    status: str = "pending"  # as this conversation sees it: pending | waiting_user | in_progress

    def row(self) -> tuple[Any, ...]:
        """The snapshot's plain row: v4 wrote the first four (a pending task, timer always set)."""
        if self.status == "pending":
            return (self.user, self.task_type, self.opened_at, self.timer)
        return (self.user, self.task_type, self.opened_at, self.timer, self.status)

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> Task:
        return cls(*row)


@dataclass(slots=True)
class TaskBook:
    """A session's tasks and the clocks around them (clocks keyed by the owner's display name)."""

    open: dict[str, Task] = field(default_factory=dict)  # task id -> task, in opening order
    awaiting: dict[str, int] = field(default_factory=dict)  # owner @-ed by staff -> response clock timer
    reminders: dict[str, int] = field(default_factory=dict)  # owner @-ed by staff -> reminder clock timer
    follow_up: dict[str, int] = field(default_factory=dict)  # owner responded -> staff follow-up timer

    def open_task_of(self, user: str) -> str | None:
        for task_id, task in self.open.items():
            if task.user == user:
                return task_id
        return None

    def tasks_of(self, user: str) -> list[tuple[str, Task]]:
        return [(task_id, task) for task_id, task in self.open.items() if task.user == user]

    def find(self, user: str, task_type: str) -> str | None:
        for task_id, task in self.open.items():
            if task.user == user and task.task_type == task_type:
                return task_id
        return None

    def has_timers(self) -> bool:
        return bool(self.open or self.awaiting or self.reminders or self.follow_up)

    def snapshot_into(self, data: dict[str, Any]) -> None:
        """Sparse plain data under the sessions step's keys: awaiting, reminders, follow_up, tasks."""
        if self.awaiting:
            data["awaiting"] = dict(self.awaiting)
        if self.reminders:
            data["reminders"] = dict(self.reminders)
        if self.follow_up:
            data["follow_up"] = dict(self.follow_up)
        if self.open:
            data["tasks"] = {task_id: task.row() for task_id, task in self.open.items()}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> TaskBook:
        return cls(
            open={task_id: Task.from_row(row) for task_id, row in data.get("tasks", {}).items()},
            awaiting=dict(data.get("awaiting", ())),
            reminders=dict(data.get("reminders", ())),
            follow_up=dict(data.get("follow_up", ())),
        )


def task_id_for(message_id: str) -> str:
    """A task opened by a message: its id follows from the message's (a replay gives the same)."""
    return "task_" + hashlib.blake2b(f"{message_id}\x1fafter_sales".encode(), digest_size=10).hexdigest()


class TaskRules:
    """The task rules over a session's `TaskBook`; the step's clock is passed in."""

    def __init__(self, config: BusinessConfig, responses: ResponseDetector, alerts: AlertRules) -> None:
        self.config = config.after_sales
        self.responses = responses
        self.alerts = alerts
        a = config.alerts
        self.not_cooperating = timedelta(minutes=a.user_not_cooperating_minutes)
        self.follow_up = timedelta(minutes=a.task_not_followed_up_minutes)
        self.unfinished = timedelta(minutes=a.task_unfinished_minutes)
        self.reminder = timedelta(minutes=config.after_sales.reminder_minutes)

    # -- opening -------------------------------------------------------------------------------

    def type_of(self, m: Message, message_type: str | None) -> TaskTypeConfig:
        if message_type == "chat_private_operation":
            return self.config.task_type_by_code[PRIVATE_OPERATION_TASK]
        return self.config.task_type_for(m.text)

    def open(self, book: TaskBook, clock: ShardClock, m: Message, message_type: str | None) -> list[Out]:
        """An owner's request: a task of its type, or an update of the one they have open."""
        kind = self.type_of(m, message_type)
        return self._open(book, clock, task_id_for(m.message_id), kind, m.sender_name, m.received_at,
                          m.session_id, m.robot_id, m.group_name or None, m.message_id, m.text[:500])  # fmt: skip

    def open_by_control(self, book: TaskBook, clock: ShardClock, rec: ControlRecord) -> list[Out]:
        """A task opened through the console (its id chosen there)."""
        kind = self.config.task_type_by_code.get(rec.task_type or "") or self.config.task_type_for("")
        assert rec.session_id and rec.task_id and rec.user_name  # ControlRecord checks create_task's fields
        group = rec.session_id.removeprefix("group:") if rec.session_id.startswith("group:") else None
        return self._open(book, clock, rec.task_id, kind, rec.user_name, rec.at, rec.session_id, None, group,
                          None, (rec.description or "")[:500] or None)  # fmt: skip

    def _open(
        self, book: TaskBook, clock: ShardClock, task_id: str, kind: TaskTypeConfig, user: str, at: datetime,
        sid: str, robot: str | None, group: str | None, message_id: str | None, text: str | None,
    ) -> list[Out]:  # fmt: skip
        existing = book.find(user, kind.code)
        if existing is not None:
            update = TaskUpdated.make(task_id=existing, message_id=message_id, description=text)
            return [update.at(at, sid, robot)]
        if task_id in book.open:
            return []  # the same request again (a control record applied once already)
        timer = clock.schedule(at + self.unfinished, sid, TASK_UNFINISHED, task_id)
        book.open[task_id] = Task(user, kind.code, at, timer)
        data = TaskCreated.make(
            task_id=task_id, task_type=kind.code, priority=kind.priority, user_name=user, group_name=group,
            message_id=message_id, description=text,
        )  # fmt: skip
        return [data.at(at, sid, robot)]

    # -- closing -------------------------------------------------------------------------------

    def complete(
        self, book: TaskBook, alerts: dict[str, Alert], clock: ShardClock, sid: str, at: datetime,
        user: str | None, reason: str, by: str | None,
    ) -> list[Out]:  # fmt: skip
        """The open tasks of `user` (every open task when None) are completed; their owners' alerts are
        cancelled (problem_solved)."""
        out: list[Out] = []
        for task_id, task in list(book.open.items()):
            if user is None or task.user == user:
                out += self.close(book, alerts, clock, sid, at, task_id, "completed", reason, by)
        return out

    def close(
        self, book: TaskBook, alerts: dict[str, Alert], clock: ShardClock, sid: str, at: datetime, task_id: str,
        outcome: str, reason: str, by: str | None,
    ) -> list[Out]:  # fmt: skip
        task = book.open.pop(task_id, None)
        if task is None:
            return []
        if task.timer is not None:
            clock.cancel(task.timer)
        if not book.tasks_of(task.user):  # nothing left to wait for from this owner
            for clocks in (book.awaiting, book.reminders):
                timer = clocks.pop(task.user, None)
                if timer is not None:
                    clock.cancel(timer)
        out: list[Out] = [TaskStatus.make(task_id=task_id, status=outcome, reason=reason, by=by).at(at, sid)]
        if outcome == "completed":
            out += self.alerts.cancel_on("task_completed", alerts, clock, at, user_name=task.user, by=by)
        return out

    def on_control(
        self, book: TaskBook, alerts: dict[str, Alert], clock: ShardClock, rec: ControlRecord
    ) -> list[Out]:
        """create_task / update_task from the console."""
        if rec.action == "create_task":
            return self.open_by_control(book, clock, rec)
        if rec.action == "update_task" and rec.task_id and rec.task_outcome and rec.session_id:
            reason = rec.reason or ("manual" if rec.task_outcome == "completed" else "cancelled")
            return self.close(book, alerts, clock, rec.session_id, rec.at, rec.task_id, rec.task_outcome,
                              reason, rec.actor)  # fmt: skip
        return []

    # -- staff and owners ----------------------------------------------------------------------

    @staticmethod
    def staff_spoke(book: TaskBook, clock: ShardClock) -> None:
        """Any staff message: the follow-ups are done."""
        for timer in book.follow_up.values():
            clock.cancel(timer)
        book.follow_up.clear()

    def staff_at(self, book: TaskBook, clock: ShardClock, m: Message, owners: list[str]) -> list[Out]:
        """Staff @-ed owners: each one with an open task is now waited for (the clocks start unless
        running); an owner without an open task is not (the @ was not about a task)."""
        out: list[Out] = []
        for owner in owners:
            tasks = book.tasks_of(owner)
            if not tasks:
                continue
            if owner not in book.awaiting:
                due = m.received_at + self.not_cooperating
                book.awaiting[owner] = clock.schedule(due, m.session_id, NOT_COOPERATING, owner)
            if owner not in book.reminders:
                due = m.received_at + self.reminder
                book.reminders[owner] = clock.schedule(due, m.session_id, TASK_REMINDER, owner)
            out += self._move(tasks, "waiting_user", m.received_at, m.session_id, m.sender_name)
        return out

    def owner_spoke(self, book: TaskBook, clock: ShardClock, m: Message) -> list[Out]:
        """An owner waited for speaks: the clocks stop; if they respond (a refusal word wins), their tasks
        are in progress and staff must follow up within the follow-up minutes."""
        user = m.sender_name
        if user not in book.awaiting:
            return []
        clock.cancel(book.awaiting.pop(user))
        reminder = book.reminders.pop(user, None)
        if reminder is not None:
            clock.cancel(reminder)
        status = self.responses.status(m.text) or "responded"
        tasks = book.tasks_of(user)
        out: list[Out] = [
            UserResponse.make(task_id=task_id, status=status).at(m.received_at, m.session_id)
            for task_id, _ in tasks
        ]
        if status == "responded":
            out += self._move(tasks, "in_progress", m.received_at, m.session_id, user)
            if tasks and user not in book.follow_up:
                due = m.received_at + self.follow_up
                book.follow_up[user] = clock.schedule(due, m.session_id, NOT_FOLLOWED_UP, user)
        return out

    @staticmethod
    def _move(tasks: list[tuple[str, Task]], status: str, at: datetime, sid: str, by: str) -> list[Out]:
        out: list[Out] = []
        for task_id, task in tasks:
            if task.status != status:
                task.status = status
                out.append(TaskStatus.make(task_id=task_id, status=status, by=by).at(at, sid))
        return out

    # -- timers --------------------------------------------------------------------------------

    def on_timer(
        self, book: TaskBook, alerts: dict[str, Alert], clock: ShardClock, timer: Timer
    ) -> list[Out]:
        """A clock of TIMER_KINDS ran out: its alert (or the reminder), if the clock is still the live one."""
        if timer.kind == TASK_UNFINISHED:
            task = book.open.get(timer.payload)
            if task is None or task.timer != timer.seq:
                return []
            task.timer = None
            user = task.user  # the task stays open: staff still have to finish it
        else:
            clocks = {NOT_COOPERATING: book.awaiting, NOT_FOLLOWED_UP: book.follow_up}.get(
                timer.kind, book.reminders
            )
            user = timer.payload
            if clocks.get(user) != timer.seq:
                return []
            del clocks[user]
            if timer.kind == TASK_REMINDER:
                minutes = self.reminder.total_seconds() / 60
                return [
                    TaskReminder.make(task_id=task_id, user_name=user, minutes=minutes).at(
                        timer.due, timer.key
                    )
                    for task_id, _ in book.tasks_of(user)
                ]
        trigger = Trigger(alert_type=TIMER_ALERTS[timer.kind], subject=timer.key, at=timer.due, user_name=user,
                          session_id=timer.key)  # fmt: skip
        return self.alerts.trigger(alerts, clock, trigger)
