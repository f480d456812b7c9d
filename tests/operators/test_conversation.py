"""The conversation part of the sessions step (operators/conversation.py), on its own: the staff-active
window, the user's wait, interventions, replies planned and withdrawn, and its sparse snapshot."""

from __future__ import annotations

from typing import Any

import pytest

from operators.conversation import Conversation, Wait
from operators.sessions import SessionPolicy
from operators.timers import ShardClock
from tests.operators.test_session_rules import CONFIG, SID, at, events, message, staff


@pytest.fixture
def parts() -> tuple[Any, ShardClock, Conversation]:
    return SessionPolicy(CONFIG).conversation, ShardClock(), Conversation()


def fire(rules: Any, clock: ShardClock, talk: Conversation, until: Any) -> list[Any]:
    out: list[Any] = []
    while (timer := clock.next_due(until)) is not None:
        if timer.kind == "staff_window_end":
            out += rules.window_end(talk, timer)
        elif timer.kind == "user_waiting":
            out += rules.user_waited(talk, {}, clock, timer)
    return out


def test_the_window_opens_moves_on_and_closes_after_the_last_staff_message(parts) -> None:
    rules, clock, talk = parts
    [opened] = rules.staff_window(talk, clock, staff("您好", 0).message)
    assert opened.data.until == at(10) and talk.status == "staff" and talk.staff_since == at(0)
    assert rules.staff_window(talk, clock, staff("稍等", 5).message) == []
    assert talk.reply_state() == ("staff", False, at(15))
    assert fire(rules, clock, talk, at(10)) == []  # the first window's timer was cancelled
    closed, state = fire(rules, clock, talk, at(15))
    assert closed.event == "staff_window_closed" and state.data.change == "staff_window_closed"
    assert talk == Conversation(last_sender_type=None)


def test_a_handover_outlives_the_window_until_solved(parts) -> None:
    rules, clock, talk = parts
    rules.staff_command(talk, "handover")
    rules.staff_window(talk, clock, staff("[转人工]", 0).message)
    fire(rules, clock, talk, at(30))
    assert talk.status == "handover"
    rules.staff_command(talk, "solved")
    assert talk.status == "staff"
    rules.staff_command(talk, "pause_replies")
    assert talk.ai_paused
    rules.staff_command(talk, "resume_replies")
    assert not talk.ai_paused


def test_the_oldest_unanswered_user_message_waits_and_staff_end_the_wait(parts) -> None:
    rules, clock, talk = parts
    rules.user_waits(talk, clock, message("在吗", 0).message)
    assert talk.waiting is None  # nobody is handling the session: no wait
    talk.status = "staff"
    first = message("在吗", 1).message
    rules.user_waits(talk, clock, first)
    rules.user_waits(talk, clock, message("还在吗", 2).message)
    assert talk.waiting == Wait(talk.waiting.timer, first.message_id, "用户甲")
    intervention, raised, *_ = fire(rules, clock, talk, at(31))
    assert (
        intervention.data.reason == "user_waiting_too_long"
        and intervention.data.message_id == first.message_id
    )
    assert raised.data.alert_type == "staff_no_reply" and talk.waiting is None
    rules.user_waits(talk, clock, message("人呢", 40).message)
    rules.staff_answered(talk, clock)
    assert talk.waiting is None and fire(rules, clock, talk, at(100)) == []


def test_a_message_needing_intervention_for_several_reasons_keeps_the_most_urgent(parts) -> None:
    rules, _, talk = parts
    talk.last_sender_type = "staff"
    m = message("我要投诉", 0, message_type="chat_complaint", sentiment=-0.9)
    [one] = rules.user_interventions(talk, m.message, m.classification, fell_low=True)
    assert one.data.reason == "complaint"
    m = message("不满意", 0, sentiment=-0.9)
    [one] = rules.user_interventions(talk, m.message, m.classification, fell_low=False)
    assert one.data.reason == "user_negative_after_staff"
    talk.last_sender_type = "user"
    assert rules.user_interventions(talk, m.message, m.classification, fell_low=False) == []


def test_a_staff_message_withdraws_the_replies_not_sent_yet(parts) -> None:
    rules, clock, talk = parts
    talk.replies["m1"] = clock.schedule(at(1), SID, "send_due", None)
    [withdrawn] = events(rules.withdraw_replies(talk, clock, staff("我来", 0.5).message, "staff_stepped_in"))
    assert withdrawn.data.message_id == "m1" and not talk.replies and not clock.pending(SID)


def test_the_conversation_snapshot_is_sparse_and_keeps_the_v4_keys() -> None:
    talk = Conversation(
        status="handover", staff_until=at(10), window_timer=3, waiting=Wait(4, "m1", "用户甲")
    )
    data: dict[str, Any] = {}
    talk.snapshot_into(data)
    assert data == {
        "status": "handover",
        "staff_until": at(10),
        "window_timer": 3,
        "waiting": (4, "m1", "用户甲"),
    }
    assert type(data["waiting"]) is tuple  # plain data
    assert Conversation.restore(data) == talk
    empty: dict[str, Any] = {}
    Conversation().snapshot_into(empty)
    assert empty == {}
