"""LLMClassifier end to end: the real openai / dashscope clients against local scripted servers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator

import pytest

from classifiers.llm import KeyResolver, LLMClassifier, Provider
from classifiers.llm.providers import Completion
from fakes.classify_stubs import FakeClock, StubRules, make_message
from fakes.llm_servers import (
    DEFAULT_ANSWER,
    USAGE,
    FakeDashScopeServer,
    FakeLLMServer,
    FakeOpenAIServer,
    bad_type,
    http_error,
    malformed,
    ok,
    refused_url,
    rejects_json_mode,
    slow,
)
from worktool.settings import Settings

SECRET = "sk-test-do-not-log-0123456789"
TIMEOUT_S = 0.4
# Fast retries keep the suite quick; production defaults are 0.25 s doubling to 2 s.
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "batch_deadline_s": 1.2}

SERVERS = {"openai": FakeOpenAIServer, "dashscope": FakeDashScopeServer}


def settings_for(provider: str, base_url: str, **overrides) -> Settings:
    values = dict(
        llm_provider=provider,
        llm_base_url=base_url,
        llm_model="fake-model",
        llm_api_key=SECRET,
        llm_timeout_s=TIMEOUT_S,
        llm_max_in_flight=4,
    )
    return Settings(**{**values, **overrides})


@pytest.fixture(params=sorted(SERVERS))
def provider(request) -> str:
    return request.param


@pytest.fixture
def server(provider) -> Iterator[FakeLLMServer]:
    with SERVERS[provider]() as s:
        yield s


@pytest.fixture
def make_classifier(provider, server):
    made: list[LLMClassifier] = []

    def make(base_url: str | None = None, settings: dict | None = None, **kwargs) -> LLMClassifier:
        s = settings_for(provider, base_url or server.base_url, **(settings or {}))
        c = LLMClassifier(StubRules(), s, **{**FAST, **kwargs})
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def only_log(classifier: LLMClassifier) -> dict:
    logs = classifier.drain_call_logs()
    assert len(logs) == 1, logs
    return logs[0]


# -- success -----------------------------------------------------------------------------------------


def test_success_takes_the_llm_verdict_and_logs_the_call(provider, server, make_classifier):
    c = make_classifier()
    m = make_message(text="你们怎么回事，结算一直拖")
    [result] = c.classify_batch([m])

    assert result.decided_by == "llm"
    assert result.sender_type == "user"  # from the rules
    assert (result.message_type, result.confidence, result.sentiment, result.need_reply) == (
        DEFAULT_ANSWER["message_type"],
        DEFAULT_ANSWER["confidence"],
        DEFAULT_ANSWER["sentiment"],
        True,
    )
    assert result.reason == DEFAULT_ANSWER["reason"]

    [req] = server.requests
    assert req.headers["authorization"] == f"Bearer {SECRET}"
    assert "结算一直拖" in req.user_text()
    assert "json_object" in json.dumps(req.body)  # JSON mode requested

    log = only_log(c)
    assert log["call_id"] == f"{m.message_id}:classify"
    assert {
        k: log[k]
        for k in (
            "message_id",
            "session_id",
            "robot_id",
            "operation_type",
            "provider",
            "model_id",
            "status",
            "error_message",
        )
    } == {
        "message_id": m.message_id,
        "session_id": m.session_id,
        "robot_id": m.robot_id,
        "operation_type": "classify",
        "provider": provider,
        "model_id": "fake-model",
        "status": "ok",
        "error_message": None,
    }
    assert (log["input_tokens"], log["output_tokens"], log["total_tokens"]) == (
        USAGE["input"],
        USAGE["output"],
        USAGE["input"] + USAGE["output"],
    )
    assert json.loads(log["output"]) == DEFAULT_ANSWER
    assert [turn["role"] for turn in json.loads(log["input"])] == ["system", "user"]
    assert log["latency_ms"] >= 0
    assert SECRET not in json.dumps(log, ensure_ascii=False)


def test_staff_keep_sender_type_and_inline_command(server, make_classifier):
    server.default = ok({**DEFAULT_ANSWER, "message_type": "staff_reply_user", "need_reply": False})
    c = make_classifier()
    [result] = c.classify_batch([make_message(sender="售后小王", text="已经帮您处理好了 [已解决]")])
    assert (result.decided_by, result.sender_type, result.message_type, result.staff_command) == (
        "llm",
        "staff",
        "staff_reply_user",
        "[已解决]",
    )
    assert "staff_reply_user" in json.dumps(server.requests[0].body)  # the staff codes were offered


def test_robot_and_empty_messages_are_not_sent(server, make_classifier):
    c = make_classifier()
    rules = StubRules()
    batch = [make_message(1, sender="小助手机器人", text="收到"), make_message(2, text="  ")]
    assert c.classify_batch(batch) == rules.classify_batch(batch)
    assert server.request_count == 0 and c.drain_call_logs() == []


# -- failures keep the rule result ------------------------------------------------------------------

FAILURES = {
    # name: (behaviour, expected status, requests the server should see)
    "slow": (slow(5.0), "timeout", None),
    "malformed_json": (malformed(), "invalid", 1),
    "type_outside_category": (bad_type(), "invalid", 1),
    "http_429": (http_error(429, retry_after="0"), "error", 4),
    "http_500": (http_error(500), "error", 4),
    "http_401": (http_error(401), "error", 1),  # other 4xx: no retry
}


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_failure_keeps_the_rule_result(mode, server, make_classifier):
    behaviour, status, requests = FAILURES[mode]
    server.default = behaviour
    c = make_classifier()
    m = make_message()
    started = time.perf_counter()
    [result] = c.classify_batch([m])

    assert time.perf_counter() - started < FAST["batch_deadline_s"] + 0.5  # the caller is never stalled
    assert result == StubRules().classify(m)
    assert result.decided_by == "rules"
    log = only_log(c)
    assert log["status"] == status, log
    assert log["error_message"]
    assert log["call_id"] == f"{m.message_id}:classify"
    if requests is not None:
        assert server.request_count == requests
    if status == "invalid":
        assert log["output"] == behaviour.content  # the raw answer is kept for inspection


def test_connection_refused_keeps_the_rule_result(make_classifier):
    c = make_classifier(base_url=refused_url() + "/v1")
    [result] = c.classify_batch([make_message()])
    assert result.decided_by == "rules"
    log = only_log(c)
    assert log["status"] == "error" and "connection" in log["error_message"].lower()


def test_a_provider_bug_never_reaches_the_caller(make_classifier):
    class Broken(Provider):
        name, model = "broken", "none"

        def __init__(self) -> None:
            self._json_mode = False
            self.keys = KeyResolver(settings_for("openai", "http://127.0.0.1:9"))

        async def _request(self, messages, *, api_key, json_mode, temperature=0) -> Completion:
            raise RuntimeError("boom")

    c = make_classifier(provider=Broken())
    [result] = c.classify_batch([make_message()])
    assert result.decided_by == "rules"
    log = only_log(c)
    assert log["status"] == "error" and "boom" in log["error_message"]


def test_the_api_key_is_redacted_even_when_the_server_echoes_it(server, make_classifier):
    server.default = http_error(401, message=f"Incorrect API key provided: {SECRET}")
    c = make_classifier()
    c.classify_batch([make_message()])
    log = only_log(c)
    assert SECRET not in json.dumps(log, ensure_ascii=False) and "***" in log["error_message"]


# -- retries ---------------------------------------------------------------------------------------


def test_500s_are_retried_until_success(server, make_classifier):
    server.script(http_error(500), http_error(500), http_error(500), ok())
    c = make_classifier()
    [result] = c.classify_batch([make_message()])
    assert result.decided_by == "llm"
    assert server.request_count == 4
    assert only_log(c)["status"] == "ok"


def test_429_retry_after_is_honoured(server, make_classifier):
    server.script(http_error(429, retry_after="1"), ok())
    c = make_classifier(max_backoff_s=2.0, batch_deadline_s=3.0)
    [result] = c.classify_batch([make_message()])
    assert result.decided_by == "llm"
    first, second = server.requests
    assert second.at - first.at >= 0.95


def test_a_server_rejecting_json_mode_is_asked_without_it(server, make_classifier):
    server.default = rejects_json_mode()
    c = make_classifier()
    [first] = c.classify_batch([make_message(1)])
    [second] = c.classify_batch([make_message(2)])
    assert first.decided_by == second.decided_by == "llm"
    asked = ["json_object" in json.dumps(r.body) for r in server.requests]
    assert asked == [True, False, False]  # rejected once, then never asked again


# -- circuit breaker -------------------------------------------------------------------------------


def test_breaker_opens_then_half_opens_after_the_cooldown(server, make_classifier):
    clock = FakeClock()
    server.default = http_error(500)
    c = make_classifier(clock=clock, failure_threshold=3, cooldown_s=30, max_attempts=1)

    c.classify_batch([make_message(i) for i in range(3)])
    assert server.request_count == 3 and c.breaker.state == "open"
    c.drain_call_logs()

    # Open: nothing reaches the server.
    results = c.classify_batch([make_message(i) for i in range(3, 8)])
    assert server.request_count == 3
    assert {r.decided_by for r in results} == {"rules"}
    assert {log["status"] for log in c.drain_call_logs()} == {"breaker_open"}

    clock.advance(29)
    c.classify_batch([make_message(8)])
    assert server.request_count == 3

    # Cool-down over: exactly one probe goes out; it fails, so the breaker opens again.
    clock.advance(1)
    c.classify_batch([make_message(i) for i in range(9, 12)])
    assert server.request_count == 4 and c.breaker.state == "open"
    c.drain_call_logs()

    # Next cool-down: the probe succeeds and closes the breaker; later messages all go to the LLM.
    server.default = ok()
    clock.advance(30)
    probe_batch = c.classify_batch([make_message(i) for i in range(12, 15)])
    assert [r.decided_by for r in probe_batch].count("llm") == 1
    assert c.breaker.state == "closed"
    assert {r.decided_by for r in c.classify_batch([make_message(i) for i in range(15, 18)])} == {"llm"}


def test_a_refused_request_does_not_trip_the_breaker(server, make_classifier):
    # e.g. DashScope's content inspection answers 400 for one message: the endpoint itself is fine.
    server.default = http_error(400, message="DataInspectionFailed")
    c = make_classifier(failure_threshold=1)
    [result] = c.classify_batch([make_message()])
    assert result.decided_by == "rules" and only_log(c)["status"] == "error"
    assert c.breaker.state == "closed"
    assert server.request_count == 2  # one try without JSON mode, in case that was the problem


# -- concurrency -----------------------------------------------------------------------------------


def test_in_flight_bound_and_batch_wall_time(server, make_classifier):
    delay, in_flight, n = 0.1, 5, 50
    server.default = slow(delay)
    c = make_classifier(
        settings={"llm_max_in_flight": in_flight, "llm_timeout_s": 3.0}, batch_deadline_s=None
    )

    started = time.perf_counter()
    results = c.classify_batch([make_message(i) for i in range(n)])
    elapsed = time.perf_counter() - started

    assert [r.decided_by for r in results] == ["llm"] * n
    assert server.max_in_flight == in_flight
    ideal = math.ceil(n / in_flight) * delay  # 1.0 s; sequential would be 5 s
    assert ideal <= elapsed < ideal * 2 + 0.5, elapsed
    assert len(c.drain_call_logs()) == n


def test_mixed_batch_each_message_on_its_own(server, make_classifier):
    def by_text(body: dict):
        text = json.dumps(body, ensure_ascii=False)
        if "SLOW-ME" in text:
            return slow(5.0)
        if "GARBLE-ME" in text:
            return malformed()
        return ok()

    server.default = by_text
    c = make_classifier()
    batch = [
        make_message(1, text="SLOW-ME 在吗"),
        make_message(2, text="GARBLE-ME 在吗"),
        make_message(3, text="结算呢"),
        make_message(4, sender="小助手机器人", text="收到"),
    ]
    results = c.classify_batch(batch)
    assert [r.decided_by for r in results] == ["rules", "rules", "llm", "rules"]
    statuses = {log["message_id"]: log["status"] for log in c.drain_call_logs()}
    assert statuses == {"msg-1": "timeout", "msg-2": "invalid", "msg-3": "ok"}
