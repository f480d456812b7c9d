"""Staff reply quality in the sessions step (docs/rules.md §3 situation 2): every staff or assistant text
answering an owner's open question within the reply window is scored, with or without an @; a low score
needs intervention while the @ still works as a task @ (§7); the score is on `message_classified`."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import pytest

from operators.sessions import SessionPolicy, SessionStep
from operators.shard import ClassifiedMessage
from operators.timers import Tick
from tests.operators.test_session_rules import CONFIG, SID, at, events, message, staff
from worktool.config import BusinessConfig


def ask(text: str, minutes: float, sender: str = "用户甲", **kw: Any) -> ClassifiedMessage:
    """An owner's question (need_reply)."""
    cm = message(text, minutes, sender=sender, **kw)
    return ClassifiedMessage(cm.message, cm.classification.model_copy(update={"need_reply": True}))


def at_owner(text: str, minutes: float, owner: str = "用户甲", **kw: Any) -> ClassifiedMessage:
    """A staff message @-ing an owner, typed as a task @ (staff_at_user) unless told otherwise."""
    kw.setdefault("message_type", "staff_at_user")
    return staff(f"@{owner} {text}", minutes, mentions=(owner,), **kw)


def with_score(cm: ClassifiedMessage, score: float) -> ClassifiedMessage:
    return ClassifiedMessage(cm.message, cm.classification.model_copy(update={"reply_quality": score}))


@pytest.fixture
def step() -> SessionStep:
    return SessionStep(SessionPolicy(CONFIG))


def quality_of(out: list[Any]) -> tuple[float | None, str | None]:
    [classified] = events(out, "message_classified")
    return classified.data.reply_quality, classified.data.reply_quality_source


def reasons(out: list[Any]) -> list[str]:
    """The quality interventions (a wait running out may fire on the same item)."""
    return [
        e.data.reason for e in events(out, "intervention_needed") if e.data.reason != "user_waiting_too_long"
    ]


def test_a_dismissive_answer_starting_with_an_at_needs_intervention_and_still_waits_for_the_owner(
    step,
) -> None:
    step.on_item(ask("需要扫码认证吗", 0, message_type="chat_after_sales"))  # opens an after-sales task
    out = step.on_item(at_owner("自己看群公告，说了多少遍了", 2))
    score, source = quality_of(out)
    assert score is not None and score < 0.5 and source == "rules"
    [need] = events(out, "intervention_needed")
    assert (need.data.reason, need.data.user_name) == ("staff_low_reply_quality", "售后-小李")
    # the intervention comes after the staff message's task events
    names = [e.event for e in events(out)]
    assert names.index("task_status") < names.index("intervention_needed")
    # the @ is still a task @: the owner's 60-minute response clock runs
    out = step.on_item(Tick(at(62)))
    assert [e.data.alert_type for e in events(out, "alert_raised")] == ["user_not_cooperating"]


def test_a_helpful_answer_with_an_at_is_scored_high(step) -> None:
    step.on_item(ask("我的佣金什么时候到账？", 0))
    out = step.on_item(at_owner("佣金7天一结，每周二到账，这周的已经打款了", 3))
    score, source = quality_of(out)
    assert score is not None and score >= 0.5 and source == "rules"
    assert reasons(out) == []


def test_an_answer_without_an_at_and_of_any_type_is_scored(step) -> None:
    step.on_item(ask("我的佣金什么时候到账？", 0))
    out = step.on_item(staff("嗯", 1, message_type="staff_other"))
    assert quality_of(out)[0] == pytest.approx(0.15)
    assert reasons(out) == ["staff_low_reply_quality"]


def test_only_the_first_answer_is_scored_and_only_within_the_window(step) -> None:
    step.on_item(ask("我的佣金什么时候到账？", 0))
    step.on_item(staff("稍等，我帮您查一下", 1, message_type="staff_other"))
    out = step.on_item(staff("嗯", 2, message_type="staff_other"))  # the question is answered already
    assert quality_of(out) == (None, None) and reasons(out) == []
    step.on_item(ask("还有，结算单在哪看", 10))
    out = step.on_item(staff("嗯", 41, message_type="staff_other"))  # 31 minutes later: past the window
    assert quality_of(out) == (None, None) and reasons(out) == []


def test_an_at_of_another_owner_answers_nothing(step) -> None:
    step.on_item(ask("我的佣金什么时候到账？", 0))
    out = step.on_item(at_owner("嗯", 1, owner="用户乙"))
    assert quality_of(out) == (None, None) and reasons(out) == []
    out = step.on_item(at_owner("自己查", 2))  # the question was still open
    assert reasons(out) == ["staff_low_reply_quality"]


def test_a_picture_or_an_inline_command_closes_the_question_unscored(step) -> None:
    step.on_item(ask("我的佣金什么时候到账？", 0))
    picture = staff("", 1, message_type="staff_other")
    picture = ClassifiedMessage(
        replace(picture.message, text_type=2, content_kind="image"), picture.classification
    )
    out = step.on_item(picture)
    assert quality_of(out) == (None, None) and reasons(out) == []
    assert step.sessions[SID].conversation.asks == {}
    step.on_item(ask("结算单在哪看", 2))
    out = step.on_item(staff("[已解决]", 3, message_type="staff_other", staff_command="solved"))
    assert quality_of(out) == (None, None) and reasons(out) == []


def test_the_llm_score_on_the_classification_wins(step) -> None:
    step.on_item(ask("我的佣金什么时候到账？", 0))
    out = step.on_item(with_score(at_owner("佣金7天一结，每周二到账", 1), 0.2))
    assert quality_of(out) == (0.2, "llm") and reasons(out) == ["staff_low_reply_quality"]
    step.on_item(ask("结算单在哪看", 2))
    out = step.on_item(with_score(at_owner("嗯", 3), 0.9))
    assert quality_of(out) == (0.9, "llm") and reasons(out) == []


def test_a_staff_reply_user_without_a_question_is_still_scored(step) -> None:
    out = step.on_item(staff("不知道，你自己看", 0))  # typed staff_reply_user
    assert quality_of(out)[1] == "rules" and reasons(out) == ["staff_low_reply_quality"]
    out = step.on_item(staff("您好，扫码后点击确认，然后等两分钟就可以了", 1, message_type="staff_other"))
    assert quality_of(out) == (None, None)  # answers nothing, typed as something else


def test_assistants_are_scored_like_staff() -> None:
    config = BusinessConfig.model_validate({**CONFIG.model_dump(), "assistants": ["群助理-小美"]})
    step = SessionStep(SessionPolicy(config))
    step.on_item(ask("我的佣金什么时候到账？", 0))
    out = step.on_item(message("问别人去", 1, sender="群助理-小美", sender_type="assistant",
                               message_type="staff_other"))  # fmt: skip
    assert reasons(out) == ["staff_low_reply_quality"]


def test_the_reply_window_is_configurable() -> None:
    config = BusinessConfig.model_validate(
        {**CONFIG.model_dump(), "intervention": {"reply_window_minutes": 5}}
    )
    step = SessionStep(SessionPolicy(config))
    step.on_item(ask("我的佣金什么时候到账？", 0))
    assert reasons(step.on_item(staff("嗯", 6, message_type="staff_other"))) == []


def test_open_questions_survive_a_snapshot(step) -> None:
    step.on_item(ask("我的佣金什么时候到账？", 0))
    snap = pickle.loads(pickle.dumps(step.snapshot()))
    resumed = SessionStep.restore(SessionPolicy(CONFIG), snap)
    assert resumed.sessions[SID].conversation.asks == step.sessions[SID].conversation.asks != {}
    out = resumed.on_item(at_owner("嗯", 1))
    assert reasons(out) == ["staff_low_reply_quality"]
