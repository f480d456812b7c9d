"""The LLM's score of a staff reply (docs/rules.md §3 situation 2) against the local fake LLM servers: a
staff message answering an owner's open question is classified with the question and scored by the
model; a malformed answer, a timeout or an answer without the score leaves the score to the rules in the
sessions step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from classifiers.llm import LLMClassifier
from fakes.classify_stubs import make_message
from fakes.llm_servers import (
    DEFAULT_ANSWER,
    Behaviour,
    FakeDashScopeServer,
    FakeOpenAIServer,
    SeenRequest,
    malformed,
    ok,
    slow,
)
from operators.classify import RuleClassifier
from operators.sessions import SessionPolicy, SessionStep
from operators.shard import ClassifiedMessage
from worktool.config import BusinessConfig
from worktool.models import Classification, Message
from worktool.settings import Settings

CONFIG = BusinessConfig(staff=["售后小王"])
OWNER = "张三"
QUESTION = "我的佣金什么时候到账？"
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "batch_deadline_s": 1.0}
STAFF_ANSWER = {**DEFAULT_ANSWER, "message_type": "staff_reply_user", "sentiment": 0.0, "need_reply": False}
USER_ANSWER = {**DEFAULT_ANSWER, "message_type": "chat_daily", "sentiment": 0.0, "need_reply": True}


def owner_asks(i: int = 1, text: str = QUESTION) -> Message:
    return make_message(i, text=text, sender=OWNER)


def staff_answers(i: int, text: str, at: str | None = OWNER) -> Message:
    m = make_message(i, text=text, sender="售后小王")
    return replace(m, raw_text=f"@{at}\u2005{text}", mentions=(at,)) if at else m


def asked_question(body: dict[str, Any]) -> bool:
    """The user turn carries the owner's question (a key of its facts)."""
    return '"号主的问题":' in SeenRequest("", {}, body, 0.0).user_text()


def scripted(staff: Behaviour) -> Any:
    """The owner's classification call succeeds; a staff call with a question gets `staff`."""
    return lambda body: staff if asked_question(body) else ok(USER_ANSWER)


@pytest.fixture(params=["openai", "dashscope"])
def server(request) -> Iterator[FakeOpenAIServer | FakeDashScopeServer]:
    with {"openai": FakeOpenAIServer, "dashscope": FakeDashScopeServer}[request.param]() as s:
        yield s


@pytest.fixture
def classifier(server) -> Iterator[LLMClassifier]:
    provider = "openai" if isinstance(server, FakeOpenAIServer) else "dashscope"
    settings = Settings(
        llm_provider=provider, llm_base_url=server.base_url, llm_model="fake-model", llm_api_key="sk-test",
        llm_timeout_s=0.4, llm_max_in_flight=4,
    )  # fmt: skip
    with LLMClassifier(RuleClassifier(CONFIG, cache_size=0), settings, **FAST) as c:
        yield c


def through_sessions(messages: list[Message], classes: list[Classification]) -> tuple[Any, list[str]]:
    """The staff message's message_classified data, and the interventions."""
    step = SessionStep(SessionPolicy(CONFIG))
    out = [e for m, c in zip(messages, classes, strict=True) for e in step.on_item(ClassifiedMessage(m, c))]
    [classified] = [e.data for e in out if getattr(e, "event", "") == "message_classified" and e.data.sender_type == "staff"]  # fmt: skip
    return classified, [e.data.reason for e in out if getattr(e, "event", "") == "intervention_needed"]


def test_success_the_staff_answer_is_scored_by_the_llm_given_the_question(server, classifier) -> None:
    server.default = scripted(ok({**STAFF_ANSWER, "reply_quality": 0.1}))
    messages = [owner_asks(1), staff_answers(2, "佣金7天一结，每周二到账")]
    classes = classifier.classify_batch(messages)
    assert classes[1].decided_by == "llm" and classes[1].reply_quality == 0.1
    assert classes[0].reply_quality is None
    staff_request = next(r for r in server.requests if asked_question(r.body))
    assert QUESTION in staff_request.user_text()
    assert "reply_quality" in json.dumps(staff_request.body, ensure_ascii=False)  # asked for in the prompt
    assert sum(asked_question(r.body) for r in server.requests) == 1  # the owner's call had no question
    data, needed = through_sessions(messages, classes)
    assert (data.reply_quality, data.reply_quality_source) == (0.1, "llm")  # the LLM wins over the rules
    assert needed == ["staff_low_reply_quality"]
    assert len(classifier.drain_call_logs()) == 2


def test_success_across_batches_and_a_high_llm_score_raises_nothing(server, classifier) -> None:
    server.default = scripted(ok({**STAFF_ANSWER, "reply_quality": 0.9}))
    messages = [owner_asks(1), staff_answers(2, "嗯")]
    classes = classifier.classify_batch(messages[:1]) + classifier.classify_batch(messages[1:])
    assert classes[1].reply_quality == 0.9
    data, needed = through_sessions(messages, classes)
    assert (data.reply_quality, data.reply_quality_source) == (0.9, "llm") and needed == []


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        pytest.param(malformed(), "invalid", id="malformed"),
        pytest.param(slow(5.0), "timeout", id="timeout"),
        pytest.param(ok(STAFF_ANSWER), "ok", id="no-score"),
        pytest.param(ok({**STAFF_ANSWER, "reply_quality": 1.7}), "invalid", id="out-of-range"),
    ],
)
def test_a_failed_llm_score_falls_back_to_the_rules(
    server, classifier, failure: Behaviour, status: str
) -> None:
    server.default = scripted(failure)
    messages = [owner_asks(1), staff_answers(2, "你自己去问运营")]
    classes = classifier.classify_batch(messages)
    assert classes[0].decided_by == "llm" and classes[1].reply_quality is None
    data, needed = through_sessions(messages, classes)
    assert data.reply_quality_source == "rules" and data.reply_quality < 0.5
    assert needed == ["staff_low_reply_quality"]
    assert sorted(log["status"] for log in classifier.drain_call_logs()) == sorted(["ok", status])


def test_a_staff_message_answering_no_question_is_not_asked_for_a_score(server, classifier) -> None:
    server.default = lambda body: ok({**STAFF_ANSWER, "reply_quality": 0.05})  # volunteered: not taken
    [c] = classifier.classify_batch([staff_answers(2, "大家早上好", at=None)])
    assert c.decided_by == "llm" and c.reply_quality is None
    assert not any(asked_question(r.body) for r in server.requests)
    # an @ of someone without an open question answers nothing either
    classifier.classify_batch([owner_asks(3)])
    [c] = classifier.classify_batch([staff_answers(4, "嗯", at="李四")])
    assert c.reply_quality is None
