"""The LLM reply generator (classifiers/llm/replies.py) against local servers speaking the OpenAI and
DashScope protocols: a reply written from the persona, the conversation and the knowledge-base passages;
plain text asked for at the persona's temperature; a slow provider ready as "timeout" at its deadline;
HTTP errors, the breaker, a failing knowledge base, and the bound on requests in flight."""

from __future__ import annotations

import time
from typing import Any

import pytest

from classifiers.llm.replies import LLMReplyGenerator
from fakes.llm_servers import Behaviour, FakeDashScopeServer, FakeOpenAIServer, http_error
from operators.knowledge import Passage
from operators.reply_writer import ReplyDraft, Said
from worktool.config import BusinessConfig
from worktool.settings import Settings

CONFIG = BusinessConfig()
ANSWER = "您好，实名认证请在视频号助手的账号设置里重新刷脸。"
PASSAGE = Passage(id="kb_7", title="实名认证怎么重做", text="进入视频号助手-账号设置-实名认证，按提示刷脸。",
                  source="kb.jsonl:7", score=2.0)  # fmt: skip


class FakeKnowledge:
    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.queries: list[str] = []

    def search(self, query: str, limit: int = 5) -> list[Passage]:
        self.queries.append(query)
        if self.fail:
            raise RuntimeError("knowledge base down")
        return [PASSAGE]


def text(content: str = ANSWER, delay_s: float = 0.0) -> Behaviour:
    return Behaviour(content=content, delay_s=delay_s)


def draft(mid: str = "m1", persona: str = "service") -> ReplyDraft:
    return ReplyDraft(mid, "group:A群", persona, "小王", "实名认证失败了怎么重新做",
                      (Said("m0", "staff", "售后-小李", "大家好"),), "tpl_after_sales_1")  # fmt: skip


def generator(server: Any, timeout_s: float = 2.0, in_flight: int = 4, **kw: Any) -> LLMReplyGenerator:
    settings = Settings(
        llm_provider="dashscope" if isinstance(server, FakeDashScopeServer) else "openai",
        llm_base_url=server.base_url, llm_model="fake-model", llm_api_key="sk-test-secret",
        llm_timeout_s=timeout_s, llm_max_in_flight=in_flight, database_url=None,
    )  # fmt: skip
    return LLMReplyGenerator(settings, CONFIG, **kw)


def wait_ready(gen: LLMReplyGenerator, handle: Any, limit_s: float = 10.0) -> None:
    end = time.monotonic() + limit_s
    while not gen.ready(handle):
        assert time.monotonic() < end, "never ready"
        time.sleep(0.01)


def write(server: Any, *drafts: ReplyDraft, **kw: Any) -> list[Any]:
    """Each draft's answer from a generator on `server`, once ready; the generator closed after."""
    gen = generator(server, **kw)
    try:
        handles = [gen.start(d) for d in drafts]
        for h in handles:
            wait_ready(gen, h)
        return [gen.result(h) for h in handles]
    finally:
        gen.close()


@pytest.mark.parametrize("server_type", [FakeOpenAIServer, FakeDashScopeServer])
def test_a_reply_from_the_persona_the_conversation_and_the_passages(server_type: type) -> None:
    knowledge = FakeKnowledge()
    with server_type(default=text()) as server:
        [answer] = write(server, draft(), knowledge=knowledge)
        [seen] = server.requests
    assert (answer.text, answer.model, answer.passages, answer.error) == (
        ANSWER,
        "fake-model",
        (PASSAGE,),
        None,
    )
    assert knowledge.queries == ["实名认证失败了怎么重新做"]
    body = seen.body
    messages = body.get("messages") or body["input"]["messages"]
    system = messages[0]["content"]
    assert CONFIG.personas.definitions["service"].system_prompt in system and "实名认证怎么重做" in system
    assert messages[-1] == {"role": "user", "content": "小王：实名认证失败了怎么重新做"}
    params = body.get("parameters", body)
    assert "response_format" not in params  # a reply is text, not a JSON object
    assert params["temperature"] == CONFIG.personas.definitions["service"].temperature


def test_a_slow_provider_is_ready_at_the_deadline_as_a_timeout() -> None:
    with FakeOpenAIServer(default=text(delay_s=3.0)) as server:
        gen = generator(server, timeout_s=0.5)
        try:
            started = time.monotonic()
            handle = gen.start(draft())
            assert not gen.ready(handle)
            wait_ready(gen, handle)
            waited = time.monotonic() - started
            answer = gen.result(handle)
        finally:
            gen.close()
    assert answer.text is None and answer.error == "timeout"
    assert 0.4 < waited < 2.0


def test_errors_open_the_breaker_and_then_nothing_is_sent() -> None:
    with FakeOpenAIServer(default=http_error(500)) as server:
        gen = generator(server, failure_threshold=3)
        try:  # one after the other: each failure is counted before the next request
            answers = []
            for i in range(5):
                handle = gen.start(draft(f"m{i}"))
                wait_ready(gen, handle)
                answers.append(gen.result(handle))
        finally:
            gen.close()
        sent = server.request_count
    assert [a.error.split(":")[0] for a in answers] == [
        "server",
        "server",
        "server",
        "breaker_open",
        "breaker_open",
    ]
    assert sent == 3 and all(a.text is None for a in answers)


def test_a_failing_knowledge_base_leaves_the_reply_without_passages() -> None:
    with FakeOpenAIServer(default=text()) as server:
        [answer] = write(server, draft(), knowledge=FakeKnowledge(fail=True))
    assert (answer.text, answer.passages) == (ANSWER, ())


def test_requests_in_flight_stay_within_the_bound() -> None:
    with FakeOpenAIServer(default=text(delay_s=0.3)) as server:
        answers = write(server, *(draft(f"m{i}") for i in range(6)), in_flight=2)
        peak = server.max_in_flight
    assert all(a.text == ANSWER for a in answers) and peak == 2
