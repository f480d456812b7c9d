"""Pure parts of classifiers.llm: circuit breaker, answer schema, prompts."""

from __future__ import annotations

import json

import pytest

from classifiers import build_classifier
from classifiers.llm import LLMClassifier, make_provider
from classifiers.llm.breaker import CircuitBreaker
from classifiers.llm.prompt import build_messages
from classifiers.llm.schema import OPERATOR_TYPES, STAFF_TYPES, USER_TYPES, InvalidAnswer, parse_verdict
from fakes.classify_stubs import FakeClock, make_message
from worktool.config import BusinessConfig
from worktool.models import Classification
from worktool.settings import Settings

# -- circuit breaker -------------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_only():
    b = CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=FakeClock())
    b.record_failure()
    b.record_failure()
    b.record_success()  # resets the run
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow()


def test_breaker_half_opens_after_cooldown_with_a_single_probe():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=30, clock=clock)
    b.record_failure()
    clock.advance(29.9)
    assert not b.allow()
    clock.advance(0.1)
    assert b.allow()  # the probe
    assert b.state == "half_open"
    assert not b.allow()  # only one probe at a time
    b.record_success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_breaker_failed_probe_reopens_for_a_new_cooldown():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=30, clock=clock)
    b.record_failure()
    clock.advance(30)
    assert b.allow()
    b.record_failure()
    assert b.state == "open"
    clock.advance(29)
    assert not b.allow()
    clock.advance(1)
    assert b.allow()


def test_breaker_released_probe_lets_the_next_probe_through():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=1, clock=clock)
    b.record_failure()
    clock.advance(1)
    assert b.allow()
    b.release()  # the probe was abandoned (deadline): no verdict
    assert b.state == "half_open" and b.allow()


def test_breaker_late_failure_while_open_does_not_extend_cooldown():
    clock = FakeClock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    b.record_failure()
    clock.advance(9)
    b.record_failure()  # a request sent before opening, failing late
    clock.advance(1)
    assert b.allow()


# -- answer schema ---------------------------------------------------------------------------------

GOOD = {
    "message_type": "chat_after_sales",
    "confidence": 0.8,
    "reason": "要扫码",
    "sentiment": 0.1,
    "need_reply": True,
}


def test_parse_accepts_a_valid_answer_even_inside_fences():
    raw = "```json\n" + json.dumps(GOOD, ensure_ascii=False) + "\n```"
    v = parse_verdict(raw, "user")
    assert (v.message_type, v.confidence, v.sentiment, v.need_reply) == ("chat_after_sales", 0.8, 0.1, True)


@pytest.mark.parametrize(
    "raw, sender, why",
    [
        ("", "user", "empty"),
        ("好的", "user", "no JSON object"),
        ('{"message_type": "chat_daily",', "user", "no JSON object"),
        ('{"message_type": "chat_daily", "confidence": }', "user", "malformed"),
        (json.dumps({**GOOD, "confidence": 1.5}), "user", "confidence"),
        (json.dumps({**GOOD, "sentiment": -2}), "user", "sentiment"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "need_reply"}), "user", "need_reply"),
        (json.dumps(GOOD), "staff", "not valid for a staff"),
        (json.dumps({**GOOD, "message_type": "staff_other"}), "user", "not valid for a user"),
        (json.dumps({**GOOD, "message_type": "chat_daily"}), "robot", "not valid for a robot"),
    ],
)
def test_parse_rejects_unusable_answers(raw, sender, why):
    with pytest.raises(InvalidAnswer, match=why):
        parse_verdict(raw, sender)


def test_assistants_use_staff_codes():
    assert parse_verdict(json.dumps({**GOOD, "message_type": "staff_reply_user"}), "assistant")


def test_the_fourteen_codes():
    assert len(USER_TYPES) + len(STAFF_TYPES) + len(OPERATOR_TYPES) == 14


# -- prompts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender, own, foreign",
    [
        ("user", USER_TYPES, STAFF_TYPES),
        ("staff", STAFF_TYPES, USER_TYPES),
        ("operator", OPERATOR_TYPES, USER_TYPES),
    ],
)
def test_prompt_lists_only_the_senders_codes(sender, own, foreign):
    rule = Classification(sender_type=sender, message_type=next(iter(own)), confidence=0.4, reason="关键词")
    system, user = build_messages(make_message(text="马上把视频发了"), rule)
    assert system["role"] == "system" and user["role"] == "user"
    assert all(code in system["content"] for code in own)
    assert not any(code in system["content"] for code in foreign)
    assert "JSON" in system["content"] and "号主" in system["content"]
    assert "马上把视频发了" in user["content"] and "关键词" in user["content"]  # message and rule hint


# -- wiring ----------------------------------------------------------------------------------------


def test_build_classifier_uses_the_rules_alone_without_a_provider():
    assert not isinstance(build_classifier(Settings(llm_provider=None), BusinessConfig()), LLMClassifier)
    c = build_classifier(Settings(llm_provider="dashscope", llm_model="qwen-plus"), BusinessConfig())
    assert isinstance(c, LLMClassifier)
    c.close()


@pytest.mark.parametrize("values", [{"llm_provider": "gemini", "llm_model": "m"}, {"llm_provider": "openai"}])
def test_misconfiguration_fails_at_construction(values):
    with pytest.raises(ValueError, match="WORKTOOL_LLM"):
        make_provider(Settings(**values))
