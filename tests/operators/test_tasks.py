"""The tasks part of the sessions step (operators/tasks.py), on its own: a session's `TaskBook` driven
through `TaskRules` with a clock of its own, as the sessions step calls it."""

from __future__ import annotations

from typing import Any

import pytest

from operators.alerts import Alert
from operators.sessions import SessionPolicy
from operators.tasks import NOT_COOPERATING, NOT_FOLLOWED_UP, TASK_UNFINISHED, Task, TaskBook
from operators.timers import ShardClock
from tests.operators.test_session_rules import CONFIG, SID, at, events, message, staff


@pytest.fixture
def parts() -> tuple[Any, ShardClock, TaskBook, dict[str, Alert]]:
    return SessionPolicy(CONFIG).tasks, ShardClock(), TaskBook(), {}


def after_sales(text: str, minutes: float, sender: str = "用户甲") -> Any:
    return message(text, minutes, sender=sender, message_type="chat_after_sales").message


def fire(rules: Any, clock: ShardClock, book: TaskBook, alerts: dict[str, Alert], until: Any) -> list[Any]:
    out: list[Any] = []
    while (timer := clock.next_due(until)) is not None:
        out += rules.on_timer(book, alerts, clock, timer)
    return out


def test_an_after_sales_request_opens_one_task_per_user_typed_by_its_words(parts) -> None:
    rules, clock, book, _ = parts
    [created] = events(rules.open(book, clock, after_sales("怎么扫码认证", 0)))
    assert (created.data.task_type, created.data.priority, created.data.user_name) == (
        "scan_qr",
        "high",
        "用户甲",
    )
    assert rules.open(book, clock, after_sales("还是不行", 1)) == []  # the user has one open
    [other] = events(rules.open(book, clock, after_sales("手机号怎么换绑", 2, sender="用户乙")))
    assert other.data.task_type == "bind_phone"
    assert [t.user for t in book.open.values()] == ["用户甲", "用户乙"]
    task = book.open[created.data.task_id]
    assert task == Task("用户甲", "scan_qr", at(0), task.timer) and clock.pending(SID)


def test_completing_closes_the_users_tasks_or_all_and_stops_their_clocks(parts) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0))
    rules.open(book, clock, after_sales("实名", 0, sender="用户乙"))
    [done] = events(rules.complete(book, clock, SID, at(5), "用户甲"))
    assert done.data.status == "completed" and [t.user for t in book.open.values()] == ["用户乙"]
    assert len(events(rules.complete(book, clock, SID, at(6), None))) == 1 and not book.open
    assert fire(rules, clock, book, alerts, at(10_000)) == [] and not clock.pending(SID)


def test_a_task_still_open_after_the_unfinished_minutes_raises_task_unfinished_and_stays_open(parts) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0))
    assert fire(rules, clock, book, alerts, at(1440) - (at(1) - at(0)) / 60_000) == []
    [raised] = events(fire(rules, clock, book, alerts, at(1440)), "alert_raised")
    assert raised.data.alert_type == "task_unfinished" and raised.event_time == at(1440)
    assert raised.data.alert.user_name == "用户甲" and len(book.open) == 1


def test_an_owner_at_by_staff_who_stays_silent_is_not_cooperating(parts) -> None:
    rules, clock, book, alerts = parts
    m = staff("@用户乙 请扫码", 0, message_type="staff_at_user", mentions=("用户乙",)).message
    rules.staff_at(book, clock, m, ["用户乙"])
    rules.staff_at(book, clock, m, ["用户乙"])  # a second @ does not restart the clock
    assert list(book.awaiting) == ["用户乙"]
    [raised] = events(fire(rules, clock, book, alerts, at(60)), "alert_raised")
    assert (raised.data.alert_type, raised.data.alert.user_name) == ("user_not_cooperating", "用户乙")
    assert not book.awaiting


def test_an_owner_who_responds_stops_the_clock_and_staff_must_follow_up(parts) -> None:
    rules, clock, book, alerts = parts
    rules.open(book, clock, after_sales("扫码", 0, sender="用户乙"))
    rules.staff_at(book, clock, staff("@用户乙 请扫码", 1, message_type="staff_at_user").message, ["用户乙"])
    [response] = events(rules.owner_spoke(book, clock, message("好的马上弄", 2, sender="用户乙").message))
    assert response.data.status == "responded" and response.data.task_id == next(iter(book.open))
    assert not book.awaiting and list(book.follow_up) == ["用户乙"]
    assert (
        rules.owner_spoke(book, clock, message("弄好了吗", 3, sender="用户乙").message) == []
    )  # no clock now
    [raised] = events(fire(rules, clock, book, alerts, at(5)), "alert_raised")
    assert raised.data.alert_type == "task_not_followed_up" and raised.event_time == at(5)


def test_a_staff_message_ends_the_follow_ups_and_a_stale_timer_does_nothing(parts) -> None:
    rules, clock, book, alerts = parts
    rules.staff_at(book, clock, staff("@用户乙", 0, message_type="staff_at_user").message, ["用户乙"])
    rules.owner_spoke(book, clock, message("好的", 1, sender="用户乙").message)
    rules.staff_spoke(book, clock)
    assert not book.follow_up and fire(rules, clock, book, alerts, at(100)) == []
    # A timer whose clock was replaced (or whose task is gone) is ignored, whatever its kind.
    for kind, payload in (
        (NOT_COOPERATING, "用户乙"),
        (NOT_FOLLOWED_UP, "用户乙"),
        (TASK_UNFINISHED, "task_x"),
    ):
        clock.schedule(at(101), SID, kind, payload)
    assert fire(rules, clock, book, alerts, at(102)) == [] and alerts == {}


def test_the_book_snapshot_keeps_the_v4_rows() -> None:
    book = TaskBook(open={"task_1": Task("用户甲", "scan_qr", at(0), 7)}, awaiting={"用户乙": 8})
    data: dict[str, Any] = {}
    book.snapshot_into(data)
    assert data == {"awaiting": {"用户乙": 8}, "tasks": {"task_1": ("用户甲", "scan_qr", at(0), 7)}}
    assert TaskBook.restore(data) == book
    empty: dict[str, Any] = {}
    TaskBook().snapshot_into(empty)
    assert empty == {} and TaskBook.restore({}) == TaskBook()
