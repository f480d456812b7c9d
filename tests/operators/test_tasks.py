"""The tasks part of the sessions step (operators/tasks.py), on its own: a session's `TaskBook` driven
through `TaskRules` with a clock of its own (the injected clock: timers fire only when told), as the
sessions step calls it; then owners' answers to a staff @, from a table of Chinese messages."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from operators.alerts import Alert
from operators.sessions import SessionPolicy, SessionStep
from operators.tasks import NOT_COOPERATING, NOT_FOLLOWED_UP, TASK_REMINDER, TASK_UNFINISHED, Task, TaskBook
from operators.timers import ShardClock, Tick
from tests.operators.test_session_rules import CONFIG, SID, at, events, message, staff
from worktool.models import ControlRecord


@pytest.fixture
def parts() -> tuple[Any, ShardClock, TaskBook, dict[str, Alert]]:
    return SessionPolicy(CONFIG).tasks, ShardClock(), TaskBook(), {}


def after_sales(text: str, minutes: float, sender: str = "用户甲") -> Any:
    return message(text, minutes, sender=sender, message_type="chat_after_sales").message


def staff_at(rules: Any, book: TaskBook, clock: ShardClock, owner: str, minutes: float) -> list[Any]:
    m = staff(f"@{owner} 请扫码", minutes, message_type="staff_at_user", mentions=(owner,)).message
    return rules.staff_at(book, clock, m, [owner])


def fire(rules: Any, clock: ShardClock, book: TaskBook, alerts: dict[str, Alert], until: Any) -> list[Any]:
    out: list[Any] = []
    while (timer := clock.next_due(until)) is not None:
        out += rules.on_timer(book, alerts, clock, timer)
    return out


def test_a_request_opens_one_task_per_owner_and_type_and_a_repeat_updates_it(parts) -> None:
    rules, clock, book, _ = parts
    [created] = events(rules.open(book, clock, after_sales("怎么扫码认证", 0), "chat_after_sales"))
    assert (created.data.task_type, created.data.priority, created.data.user_name) == (
        "scan_qr",
        "high",
        "用户甲",
    )
    [again] = events(rules.open(book, clock, after_sales("扫码还是不行", 1), "chat_after_sales"))
    assert (again.event, again.data.task_id, again.data.description) == (
        "task_updated",
        created.data.task_id,
        "扫码还是不行",
    )
    [phone] = events(rules.open(book, clock, after_sales("手机号怎么换绑", 2), "chat_after_sales"))
    assert (
        phone.event == "task_created" and phone.data.task_type == "bind_phone"
    )  # another need: another task
    private = message("我自己把号注销了", 3, message_type="chat_private_operation").message
    [urgent] = events(rules.open(book, clock, private, "chat_private_operation"))
    assert (urgent.data.task_type, urgent.data.priority) == ("private_operation", "urgent")
    assert [t.task_type for t in book.open.values()] == ["scan_qr", "bind_phone", "private_operation"]
    task = book.open[created.data.task_id]
    assert task == Task("用户甲", "scan_qr", at(0), task.timer) and clock.pending(SID)


def test_task_types_come_from_the_configuration() -> None:
    config = CONFIG.model_copy(deep=True)
    config.after_sales.task_types.insert(
        0,
        config.after_sales.task_types[0].model_copy(
            update={"code": "shop", "label": "小店开通", "keywords": ["小店"]}
        ),
    )
    config.after_sales.__dict__.pop("task_type_by_code", None)
    rules = SessionPolicy(config).tasks
    [created] = events(
        rules.open(TaskBook(), ShardClock(), after_sales("小店扫码开通", 0), "chat_after_sales")
    )
    assert created.data.task_type == "shop"  # first configured type whose keyword matches


def test_completing_closes_the_owners_tasks_or_all_stops_their_clocks_and_cancels_their_alerts(parts) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0), "chat_after_sales")
    rules.open(book, clock, after_sales("实名", 0, sender="用户乙"), "chat_after_sales")
    staff_at(rules, book, clock, "用户甲", 1)
    raised = fire(rules, clock, book, alerts, at(61))  # 用户甲 did not answer: user_not_cooperating
    assert [e.data.alert_type for e in events(raised, "alert_raised")] == ["user_not_cooperating"]
    out = rules.complete(book, alerts, clock, SID, at(65), "用户甲", "solved", "用户甲")
    [done] = events(out, "task_status")
    assert (done.data.status, done.data.reason, done.data.by) == ("completed", "solved", "用户甲")
    assert [e.data.reason for e in events(out, "alert_cancelled")] == ["problem_solved"]
    assert [t.user for t in book.open.values()] == ["用户乙"] and not book.awaiting and not book.reminders
    assert len(events(rules.complete(book, alerts, clock, SID, at(66), None, "solved", "售后-小李"))) == 1
    assert not book.open and fire(rules, clock, book, alerts, at(10_000)) == [] and not clock.pending(SID)


def test_the_console_opens_completes_and_cancels_tasks(parts) -> None:
    rules, clock, book, alerts = parts
    create = ControlRecord(action="create_task", at=at(0), actor="主管", request_id="r1", session_id=SID,
                           task_id="task_api", task_type="appeal_video", user_name="用户丙", description="申诉")  # fmt: skip
    [created] = events(rules.on_control(book, alerts, clock, create))
    assert (
        created.data.task_id,
        created.data.task_type,
        created.data.message_id,
        created.data.group_name,
    ) == ("task_api", "appeal_video", None, "A群")
    close = ControlRecord(action="update_task", at=at(5), actor="售后-小李", request_id="r2", session_id=SID,
                          task_id="task_api", task_outcome="cancelled", reason="重复的任务")  # fmt: skip
    [cancelled] = events(rules.on_control(book, alerts, clock, close))
    assert (cancelled.data.status, cancelled.data.reason, cancelled.data.by) == (
        "cancelled",
        "重复的任务",
        "售后-小李",
    )
    assert rules.on_control(book, alerts, clock, close) == []  # already closed
    assert not book.open and not clock.pending(SID)


def test_a_task_still_open_after_the_unfinished_minutes_raises_task_unfinished_and_stays_open(parts) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0), "chat_after_sales")
    assert fire(rules, clock, book, alerts, at(1440) - (at(1) - at(0)) / 60_000) == []
    [raised] = events(fire(rules, clock, book, alerts, at(1440)), "alert_raised")
    assert raised.data.alert_type == "task_unfinished" and raised.event_time == at(1440)
    assert raised.data.alert.user_name == "用户甲" and len(book.open) == 1


def test_an_at_about_a_task_waits_for_the_owner_reminds_at_30_and_alerts_at_60(parts) -> None:
    rules, clock, book, alerts = parts
    [created] = events(rules.open(book, clock, after_sales("扫码", 0, sender="用户乙"), "chat_after_sales"))
    [waiting] = events(staff_at(rules, book, clock, "用户乙", 1), "task_status")
    assert (waiting.data.status, waiting.data.by) == ("waiting_user", "售后-小李")
    assert (
        staff_at(rules, book, clock, "用户乙", 2) == []
    )  # a second @ neither restarts a clock nor moves the task
    assert list(book.awaiting) == list(book.reminders) == ["用户乙"]
    [reminder] = events(fire(rules, clock, book, alerts, at(31)), "task_reminder")
    assert (reminder.data.task_id, reminder.data.minutes, reminder.event_time) == (
        created.data.task_id,
        30,
        at(31),
    )
    [raised] = events(fire(rules, clock, book, alerts, at(61)), "alert_raised")
    assert (raised.data.alert_type, raised.data.alert.user_name) == ("user_not_cooperating", "用户乙")
    assert not book.awaiting and not book.reminders


def test_an_at_of_an_owner_without_a_task_starts_nothing(parts) -> None:
    rules, clock, book, alerts = parts
    assert staff_at(rules, book, clock, "用户乙", 0) == []
    assert rules.owner_spoke(book, clock, message("好的", 1, sender="用户乙").message) == []
    assert not clock.pending(SID) and fire(rules, clock, book, alerts, at(500)) == []


def test_an_owner_who_responds_stops_the_clocks_and_staff_must_follow_up(parts) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0, sender="用户乙"), "chat_after_sales")
    staff_at(rules, book, clock, "用户乙", 1)
    out = rules.owner_spoke(book, clock, message("好的马上弄", 2, sender="用户乙").message)
    [response] = events(out, "user_response")
    assert response.data.status == "responded" and response.data.task_id == next(iter(book.open))
    assert [e.data.status for e in events(out, "task_status")] == ["in_progress"]
    assert not book.awaiting and not book.reminders and list(book.follow_up) == ["用户乙"]
    assert (
        rules.owner_spoke(book, clock, message("弄好了吗", 3, sender="用户乙").message) == []
    )  # no clock now
    [raised] = events(fire(rules, clock, book, alerts, at(5)), "alert_raised")
    assert raised.data.alert_type == "task_not_followed_up" and raised.event_time == at(5)


def test_a_staff_message_ends_the_follow_ups_and_a_stale_timer_does_nothing(parts) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0, sender="用户乙"), "chat_after_sales")
    staff_at(rules, book, clock, "用户乙", 0)
    rules.owner_spoke(book, clock, message("好的", 1, sender="用户乙").message)
    rules.staff_spoke(book, clock)
    assert not book.follow_up and events(fire(rules, clock, book, alerts, at(100)), "alert_raised") == []
    # A timer whose clock was replaced (or whose task is gone) is ignored, whatever its kind.
    for kind, payload in (
        (NOT_COOPERATING, "用户乙"), (NOT_FOLLOWED_UP, "用户乙"), (TASK_REMINDER, "用户乙"), (TASK_UNFINISHED, "task_x"),
    ):  # fmt: skip
        clock.schedule(at(101), SID, kind, payload)
    assert fire(rules, clock, book, alerts, at(102)) == [] and alerts == {}


# -- owners' answers to a staff @ about their task ------------------------------------------------

ANSWERS = [
    # (what the owner writes, textType, the answer read, the task moves to in_progress)
    ("好的", 1, "responded", True),
    ("在的，马上弄", 1, "responded", True),
    ("收到👌", 1, "responded", True),
    ("可以，几点", 1, "responded", True),
    ("👍", 1, "responded", True),  # an emoji alone is an answer
    ("", 2, "responded", True),  # a voice message (no text): an answer
    ("没时间，不弄了", 1, "refused", False),
    ("不想弄", 1, "refused", False),
    ("好的，但是我不配合", 1, "refused", False),  # both: a refusal wins
    ("行吧，没时间弄", 1, "refused", False),
    ("你们怎么这么慢", 1, "responded", True),  # neither word: they spoke, so they answered
]


@pytest.mark.parametrize(
    ("text", "text_type", "status", "moves"), ANSWERS, ids=[a[0] or "voice" for a in ANSWERS]
)
def test_an_owners_answer(parts, text: str, text_type: int, status: str, moves: bool) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0, sender="用户乙"), "chat_after_sales")
    staff_at(rules, book, clock, "用户乙", 1)
    m = message(text, 2, sender="用户乙").message
    m = replace(m, text_type=text_type, content_kind="voice" if text_type == 2 else "text")
    out = rules.owner_spoke(book, clock, m)
    assert [e.data.status for e in events(out, "user_response")] == [status]
    assert [e.data.status for e in events(out, "task_status")] == (["in_progress"] if moves else [])
    # a refusal owes no follow-up; a response does
    assert list(book.follow_up) == (["用户乙"] if moves else [])


def test_an_at_to_someone_else_leaves_the_owner_unwaited(parts) -> None:
    """Through the whole sessions step: staff @ 用户丙 (who has no task) while 用户乙's task is open."""
    step = SessionStep(SessionPolicy(CONFIG))
    step.on_item(message("需要扫码认证吗", 0, sender="用户乙", message_type="chat_after_sales"))
    out = step.on_item(staff("@用户丙 您好", 1, message_type="staff_at_user", mentions=("用户丙",)))
    assert events(out, "task_status") == []
    out = step.on_item(message("好的", 2, sender="用户乙"))
    assert events(out, "user_response") == []  # nobody was waiting for 用户乙
    out = step.on_item(Tick(at(200)))
    raised = {e.data.alert_type for e in events(out, "alert_raised")}
    assert raised == {"staff_no_reply"}  # 用户乙 wrote to staff and waits (the conversation's rule)
    assert events(out, "task_reminder") == []  # but no task wait: the @ was not to them


def test_the_book_snapshot_keeps_pending_tasks_as_v4_rows_and_adds_the_new_state() -> None:
    book = TaskBook(open={"task_1": Task("用户甲", "scan_qr", at(0), 7)}, awaiting={"用户乙": 8})
    data: dict[str, Any] = {}
    book.snapshot_into(data)
    assert data == {"awaiting": {"用户乙": 8}, "tasks": {"task_1": ("用户甲", "scan_qr", at(0), 7)}}
    assert TaskBook.restore(data) == book
    moved = TaskBook(
        open={"task_1": Task("用户甲", "scan_qr", at(0), None, "waiting_user")}, reminders={"用户甲": 9}
    )
    data = {}
    moved.snapshot_into(data)
    assert data == {
        "reminders": {"用户甲": 9},
        "tasks": {"task_1": ("用户甲", "scan_qr", at(0), None, "waiting_user")},
    }
    assert TaskBook.restore(data) == moved
    empty: dict[str, Any] = {}
    TaskBook().snapshot_into(empty)
    assert empty == {} and TaskBook.restore({}) == TaskBook()
