"""Recorded LLM classifications (issue 16 part 4): the live LLMClassifier records one answer per message
it asked about (ok with the completion's content when used, fallback with the reason when the local
result stood); the replay's RecordedClassifier, given those answers as archive lines and no provider,
gives exactly the live Classifications, whatever the batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from classifiers import build_replay_classifier, call_log_events
from classifiers.llm import LLMClassifier
from classifiers.llm.recorded import RecordedClassifier
from fakes.classify_stubs import make_message
from fakes.llm_servers import (
    DEFAULT_ANSWER,
    Behaviour,
    FakeDashScopeServer,
    FakeOpenAIServer,
    bad_type,
    http_error,
    malformed,
    ok,
    slow,
)
from operators.classify import RuleClassifier
from operators.recordings import LINE_PREFIX, BadRecording, Recordings
from worktool.config import BusinessConfig
from worktool.models import Classification, LlmRecord, Message
from worktool.settings import Settings

CONFIG = BusinessConfig(staff=["售后小王"])
OWNER = "张三"
QUESTION = "我的佣金什么时候到账？"
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "batch_deadline_s": 1.0}
STAFF_ANSWER = {**DEFAULT_ANSWER, "message_type": "staff_reply_user", "sentiment": 0.0, "need_reply": False}
USER_ANSWER = {**DEFAULT_ANSWER, "message_type": "chat_daily", "sentiment": 0.1, "need_reply": True}

# Each message's text names how the fake LLM answers it.
SCRIPT: dict[str, Behaviour] = {
    "[投诉]": ok(),  # chat_complaint, need_reply, sentiment -0.8
    "[格式坏]": malformed(),
    "[类型错]": bad_type(),
    "[超时]": slow(3.0),  # past the batch deadline
    "[失败]": http_error(400),  # refused, not retried
    "[未问分]": ok({**USER_ANSWER, "reply_quality": 0.9}),  # a score nobody asked for is not taken
}


def answer_for(body: dict[str, Any]) -> Behaviour:
    messages = body.get("messages") or body.get("input", {}).get("messages", [])
    user = "".join(m["content"] for m in messages if m["role"] == "user")
    if '"号主的问题":' in user:  # a staff answer to an owner's question: scored low
        return ok({**STAFF_ANSWER, "reply_quality": 0.15})
    return next((b for marker, b in SCRIPT.items() if marker in user), ok(USER_ANSWER))


def owner(i: int, text: str) -> Message:
    return make_message(i, text=text, sender=OWNER)


def staff(i: int, text: str) -> Message:
    m = make_message(i, text=text, sender="售后小王")
    return replace(m, raw_text=f"@{OWNER}\u2005{text}", mentions=(OWNER,))


def batches() -> list[list[Message]]:
    """Two batches: the owner's question in the first, the staff answer to it in the second (so live
    asks for the score across batches), every failure mode, and messages no LLM is asked about."""
    return [
        [
            owner(1, QUESTION),
            owner(2, "[投诉]你们这样我要投诉了"),
            owner(3, "[格式坏]这个号怎么还没有收益"),
            owner(4, "[类型错]今天天气不错"),
            make_message(5, text="[超时]什么时候结算", sender="李四"),
            make_message(6, text="", sender="王五"),  # empty text: not asked
            make_message(7, text="我刚刚上传了视频", sender="钱七"),
        ],
        [
            staff(8, "佣金7天一结，每周二到账"),
            make_message(9, text="[失败]在吗", sender="李四"),
            make_message(10, text="[未问分]好的收到", sender="赵六"),
        ],
    ]


@pytest.fixture(params=["openai", "dashscope"])
def server(request) -> Iterator[FakeOpenAIServer | FakeDashScopeServer]:
    with {"openai": FakeOpenAIServer, "dashscope": FakeDashScopeServer}[request.param]() as s:
        s.default = answer_for
        yield s


def live_classifier(server) -> LLMClassifier:
    provider = "openai" if isinstance(server, FakeOpenAIServer) else "dashscope"
    settings = Settings(
        llm_provider=provider, llm_base_url=server.base_url, llm_model="fake-model", llm_api_key="sk-test",
        llm_timeout_s=0.4, llm_max_in_flight=4,
    )  # fmt: skip
    roster = RuleClassifier(CONFIG, cache_size=0)
    return LLMClassifier(roster, settings, **FAST)


def as_archive_lines(records: list[LlmRecord]) -> Recordings:
    """The answers as `worktool archive` writes them, read back as a replay reads them."""
    recordings = Recordings()
    for r in records:
        line = r.to_json()
        assert line.startswith(LINE_PREFIX)
        recordings.add_line(line)
    return recordings


def test_the_recorded_classifier_gives_the_live_classifications(server) -> None:
    with live_classifier(server) as live:
        live_results: list[Classification] = []
        for batch in batches():
            live_results += live.classify_batch(batch)
        answers = live.drain_recorded_answers()
        calls = live.drain_call_logs()
    messages = [m for b in batches() for m in b]

    # One answer per message asked about (not the empty one), as many as ai_call logs.
    by_key = {a.key: a for a in answers}
    assert len(answers) == len(calls) == 9 and set(by_key) == {
        f"msg-{i}" for i in (1, 2, 3, 4, 5, 7, 8, 9, 10)
    }
    assert {k: a.status for k, a in by_key.items()} == {
        "msg-1": "ok", "msg-2": "ok", "msg-3": "fallback", "msg-4": "fallback", "msg-5": "fallback", "msg-7": "ok",
        "msg-8": "ok", "msg-9": "fallback", "msg-10": "ok",
    }  # fmt: skip
    assert {k: a.detail["reason"] for k, a in by_key.items() if a.status == "fallback"} == {
        "msg-3": "invalid", "msg-4": "invalid", "msg-5": "timeout", "msg-9": "error",
    }  # fmt: skip
    ok_answer = by_key["msg-2"]
    assert (ok_answer.operation, ok_answer.at, ok_answer.model) == (
        "classify",
        messages[1].received_at,
        "fake-model",
    )
    assert json.loads(ok_answer.output or "") == DEFAULT_ANSWER  # the completion's content, verbatim
    assert by_key["msg-8"].detail["scores_reply"] is True and by_key["msg-2"].detail["scores_reply"] is False
    assert all(a.output is None for a in answers if a.status == "fallback")
    # what live decided, so that the comparison below means something
    assert [c.decided_by for c in live_results] == [
        "llm", "llm", "rules", "rules", "rules", "rules", "llm", "llm", "rules", "llm",
    ]  # fmt: skip
    assert live_results[7].reply_quality == 0.15 and live_results[9].reply_quality is None

    requests = server.request_count
    recordings = as_archive_lines(answers)
    replayed = RecordedClassifier(RuleClassifier(CONFIG, cache_size=0), recordings)
    # other batches than live's: the whole stream at once, then one message at a time
    assert replayed.classify_batch(messages) == live_results
    one_by_one = RecordedClassifier(RuleClassifier(CONFIG, cache_size=0), recordings)
    assert [one_by_one.classify_batch([m])[0] for m in messages] == live_results
    assert (replayed.used, replayed.fallbacks) == (5, 4)
    assert server.request_count == requests  # no provider was asked


def test_a_batch_the_loop_never_finishes_is_recorded_as_fallbacks(server, monkeypatch) -> None:
    import classifiers.llm.classifier as module

    server.default = slow(10.0)
    with live_classifier(server) as live:
        live._deadline_s = 5.0  # the loop would wait longer than the caller does: a wedged loop
        monkeypatch.setattr(module, "_LOOP_GRACE_S", -4.5)  # the caller gives up after 0.5 s
        results = live.classify_batch([owner(1, "在吗"), owner(2, "[投诉]投诉")])
        answers = live.drain_recorded_answers()
    assert [c.decided_by for c in results] == ["rules", "rules"]
    # exactly what the batch used: the calls cancelled on the loop add nothing a replay could apply
    assert [(a.key, a.status, a.detail["reason"]) for a in answers] == [
        ("msg-1", "fallback", "timeout"),
        ("msg-2", "fallback", "timeout"),
    ]


def test_call_log_events_carry_the_answers_after_the_ai_calls(server) -> None:
    with live_classifier(server) as live:
        live.classify_batch([owner(1, "[投诉]投诉")])
        drain = call_log_events(live)
        assert drain is not None
        drained = drain()
    assert [getattr(x, "event", None) for x in drained] == ["ai_call", None]
    assert isinstance(drained[-1], LlmRecord) and drained[-1].status == "ok"


def test_a_replay_never_builds_a_provider() -> None:
    settings = Settings(llm_provider="openai", llm_base_url="http://127.0.0.1:9", llm_api_key="sk-x")
    rules = build_replay_classifier(settings, CONFIG, Recordings())
    assert isinstance(rules, RuleClassifier)
    recorded = Recordings(
        [LlmRecord(operation="classify", key="m", at=make_message(1).received_at, status="fallback")]
    )
    assert isinstance(build_replay_classifier(settings, CONFIG, recorded), RecordedClassifier)
    replies_only = Recordings(
        [LlmRecord(operation="reply", key="c", at=make_message(1).received_at, status="ok", output="好的")]
    )
    assert isinstance(build_replay_classifier(settings, CONFIG, replies_only), RuleClassifier)


def test_recordings_read_from_lines() -> None:
    at = make_message(1).received_at
    recordings = Recordings()
    recordings.add_line(LlmRecord(operation="classify", key="m1", at=at, status="ok", output="{}").to_json())
    recordings.add_line(LlmRecord(operation="classify", key="m1", at=at, status="fallback").to_json())
    recordings.add_line(
        b'{"kind":"llm_answer","operation":"reply","key":"c1","at":"not a time","status":"ok"}'
    )
    assert (len(recordings), recordings.count("classify"), recordings.count("reply")) == (2, 1, 1)
    got = recordings.get("classify", "m1")
    assert got is not None and got.status == "fallback"  # the latest line of a key wins
    assert recordings.get("classify", "m1") == got
    assert recordings.get("reply", "c1") is None  # not a valid record: as if nothing was recorded
    assert recordings.get("reply", "nope") is None
    for bad in (b'{"kind":"llm_answer",', b'{"kind":"llm_answer","operation":"guess","key":"x"}',
                b'{"kind":"llm_answer","operation":"classify","key":""}'):  # fmt: skip
        with pytest.raises(BadRecording):
            recordings.add_line(bad)
