"""The after-sales tasks of a conversation (docs/rules.md §7, the part implemented so far). Pure; the
clock is the sessions step's, passed in.

    a user's chat_after_sales message, no task of theirs open -> task_created (type by keywords);
        the task_unfinished clock starts (alerts.task_unfinished_minutes)
    the user says it is solved / a [已解决] command         -> the user's / every open task completed
    staff @ an owner (staff_at_user)                      -> the owner's response clock starts
        (alerts.user_not_cooperating_minutes: user_not_cooperating)
    the owner speaks                                      -> the clock stops; user_response for their
        open task; if they responded, the follow-up clock starts (alerts.task_not_followed_up_minutes:
        task_not_followed_up) until staff write
    any staff message                                     -> follow-ups done

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
from worktool.config import AlertConfig
from worktool.events import TaskCreated, TaskStatus, UserResponse
from worktool.models import Message

NOT_COOPERATING = "user_not_cooperating"
NOT_FOLLOWED_UP = "task_not_followed_up"
TASK_UNFINISHED = "task_unfinished"
# The timer kinds `on_timer` handles, and the alert each raises when it runs out.
TIMER_ALERTS = {
    NOT_COOPERATING: "user_not_cooperating",
    NOT_FOLLOWED_UP: "task_not_followed_up",
    TASK_UNFINISHED: "task_unfinished",
}

# After-sales task types by keyword (docs/rules.md §7), first match wins; priority per type.
TASK_TYPES = (
    ("scan_qr", ("扫码", "二维码", "二唯码", "qr"), "high"),
    ("real_name", ("实名", "认证", "人脸", "刷脸", "身份", "出镜人", "出境人"), "high"),
    ("bind_phone", ("绑定", "换绑", "手机号", "验证码"), "normal"),
    ("appeal_video", ("申诉", "自拍", "封号", "被封", "解封"), "normal"),
)


def contains_any(text: str, words: Iterable[str]) -> bool:
    """`any(w in text for w in words)` without a generator (the per-message path)."""
    for w in words:  # noqa: SIM110 (a loop: no generator per call)
        if w in text:
            return True
    return False


@dataclass(slots=True)
class Task:
    """An open after-sales task (a completed one leaves the book)."""

    user: str  # the owner who asked
    task_type: str
    opened_at: datetime
    timer: int  # its task_unfinished clock

    def row(self) -> tuple[str, str, datetime, int]:
        """The snapshot's plain row (v4 layout)."""
        return (self.user, self.task_type, self.opened_at, self.timer)

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> Task:
        return cls(*row)


@dataclass(slots=True)
class TaskBook:
    """A session's tasks and the clocks around them."""

    open: dict[str, Task] = field(default_factory=dict)  # task id -> task, in opening order
    awaiting: dict[str, int] = field(default_factory=dict)  # owner @-ed by staff -> response clock timer
    follow_up: dict[str, int] = field(default_factory=dict)  # owner responded -> staff follow-up timer

    def open_task_of(self, user: str) -> str | None:
        for task_id, task in self.open.items():
            if task.user == user:
                return task_id
        return None

    def snapshot_into(self, data: dict[str, Any]) -> None:
        """Sparse plain data under the sessions step's v4 keys: awaiting, follow_up, tasks."""
        if self.awaiting:
            data["awaiting"] = dict(self.awaiting)
        if self.follow_up:
            data["follow_up"] = dict(self.follow_up)
        if self.open:
            data["tasks"] = {task_id: task.row() for task_id, task in self.open.items()}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> TaskBook:
        return cls(
            open={task_id: Task.from_row(row) for task_id, row in data.get("tasks", {}).items()},
            awaiting=dict(data.get("awaiting", ())),
            follow_up=dict(data.get("follow_up", ())),
        )


class TaskRules:
    """The task rules over a session's `TaskBook`; the step's clock is passed in."""

    def __init__(self, config: AlertConfig, responses: ResponseDetector, alerts: AlertRules) -> None:
        self.responses = responses
        self.alerts = alerts
        self.not_cooperating = timedelta(minutes=config.user_not_cooperating_minutes)
        self.follow_up = timedelta(minutes=config.task_not_followed_up_minutes)
        self.unfinished = timedelta(minutes=config.task_unfinished_minutes)

    # -- the task ------------------------------------------------------------------------------

    def open(self, book: TaskBook, clock: ShardClock, m: Message) -> list[Out]:
        """An after-sales request: a task for its user, unless they have one open."""
        if book.open_task_of(m.sender_name) is not None:
            return []
        task_type, priority = "other", "normal"
        text = m.text.lower()
        for name, words, prio in TASK_TYPES:
            if contains_any(text, words):
                task_type, priority = name, prio
                break
        task_id = (
            "task_" + hashlib.blake2b(f"{m.message_id}\x1fafter_sales".encode(), digest_size=10).hexdigest()
        )
        timer = clock.schedule(m.received_at + self.unfinished, m.session_id, TASK_UNFINISHED, task_id)
        book.open[task_id] = Task(m.sender_name, task_type, m.received_at, timer)
        data = TaskCreated.make(
            task_id=task_id, task_type=task_type, priority=priority, user_name=m.sender_name,
            group_name=m.group_name or None, message_id=m.message_id, description=m.text[:500],
        )  # fmt: skip
        return [data.at(m.received_at, m.session_id, m.robot_id)]

    @staticmethod
    def complete(book: TaskBook, clock: ShardClock, sid: str, at: datetime, user: str | None) -> list[Out]:
        """The open tasks of `user` (every open task when None) are completed."""
        out: list[Out] = []
        for task_id, task in list(book.open.items()):
            if user is None or task.user == user:
                clock.cancel(task.timer)
                del book.open[task_id]
                out.append(TaskStatus.make(task_id=task_id, status="completed").at(at, sid))
        return out

    # -- staff and owners ----------------------------------------------------------------------

    @staticmethod
    def staff_spoke(book: TaskBook, clock: ShardClock) -> None:
        """Any staff message: the follow-ups are done."""
        for timer in book.follow_up.values():
            clock.cancel(timer)
        book.follow_up.clear()

    def staff_at(self, book: TaskBook, clock: ShardClock, m: Message, owners: list[str]) -> None:
        """Staff @-ed owners: each one's response clock starts (unless running)."""
        for owner in owners:
            if owner not in book.awaiting:
                due = m.received_at + self.not_cooperating
                book.awaiting[owner] = clock.schedule(due, m.session_id, NOT_COOPERATING, owner)

    def owner_spoke(self, book: TaskBook, clock: ShardClock, m: Message) -> list[Out]:
        """An owner @-ed by staff speaks: the response clock stops; if they respond, staff must follow
        up within the follow-up minutes."""
        user = m.sender_name
        if user not in book.awaiting:
            return []
        clock.cancel(book.awaiting.pop(user))
        status = self.responses.status(m.text) or "responded"
        out: list[Out] = []
        task = book.open_task_of(user)
        if task is not None:
            out.append(UserResponse.make(task_id=task, status=status).at(m.received_at, m.session_id))
        if status == "responded" and user not in book.follow_up:
            due = m.received_at + self.follow_up
            book.follow_up[user] = clock.schedule(due, m.session_id, NOT_FOLLOWED_UP, user)
        return out

    # -- timers --------------------------------------------------------------------------------

    def on_timer(
        self, book: TaskBook, alerts: dict[str, Alert], clock: ShardClock, timer: Timer
    ) -> list[Out]:
        """A clock of TIMER_ALERTS ran out: its alert, if the clock is still the live one."""
        if timer.kind == TASK_UNFINISHED:
            task = book.open.get(timer.payload)
            if task is None:
                return []
            user = task.user  # the task stays open: staff still have to finish it
        else:
            clocks = book.awaiting if timer.kind == NOT_COOPERATING else book.follow_up
            user = timer.payload
            if clocks.get(user) != timer.seq:
                return []
            del clocks[user]
        trigger = Trigger(alert_type=TIMER_ALERTS[timer.kind], subject=timer.key, at=timer.due, user_name=user,
                          session_id=timer.key)  # fmt: skip
        return self.alerts.trigger(alerts, clock, trigger)
