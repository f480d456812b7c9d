"""The remote knowledge base adapter (infra/taxkb.py) against a local fake TaxKB (tests/fakes/taxkb_server.py):
passages on success, none (and a log line without the key) on a timeout, an HTTP error, malformed JSON,
an error envelope or a refused connection; answers cached for the TTL, failures never."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from fakes.taxkb_server import FakeTaxKB, Reply
from infra.taxkb import TaxKBKnowledgeBase, read_answer
from operators.knowledge import KnowledgeBase

KEY = "taxkb-test-key-5f0c2a7e9d"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeTaxKB]:
    with FakeTaxKB(api_key=KEY) as server:
        yield server


def adapter(fake: FakeTaxKB, **kwargs: object) -> TaxKBKnowledgeBase:
    return TaxKBKnowledgeBase(fake.base_url, KEY, **kwargs)  # type: ignore[arg-type]


def test_success_answers_passages_best_first_with_the_key_sent(fake: FakeTaxKB) -> None:
    kb = adapter(fake)
    assert isinstance(kb, KnowledgeBase)
    passages = kb.search("个体工商户怎么开发票，要缴税吗", 2)
    assert [p.id for p in passages] == ["taxkb:tax-002", "taxkb:tax-003"]
    assert passages[0].title == "个体工商户如何开具发票" and passages[0].source == "taxkb"
    assert passages[0].score >= passages[1].score > 0
    [request] = fake.requests
    assert request.path == "/search" and request.authorization == f"Bearer {KEY}"
    assert request.body == {"query": "个体工商户怎么开发票，要缴税吗", "top_k": 2}
    kb.close()


def test_a_wrong_key_is_no_passages(fake: FakeTaxKB, caplog: pytest.LogCaptureFixture) -> None:
    kb = TaxKBKnowledgeBase(fake.base_url, "wrong-key-0000000000")
    with caplog.at_level(logging.WARNING, logger="infra.taxkb"):
        assert kb.search("发票", 3) == []
    assert "HTTP 401" in caplog.text and "wrong-key" not in caplog.text


def test_a_timeout_is_no_passages_within_the_timeout(
    fake: FakeTaxKB, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(Reply(delay_s=2.0))
    kb = adapter(fake, timeout_s=0.3)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="infra.taxkb"):
        assert kb.search("发票", 3) == []
    assert time.monotonic() - started < 1.5
    assert "no answer within 0.3 s" in caplog.text and KEY not in caplog.text


@pytest.mark.parametrize(
    ("reply", "logged"),
    [
        (Reply(status=500), "HTTP 500"),
        (Reply(status=503, raw=b"<html>busy</html>"), "HTTP 503"),
        (Reply(raw=b'{"code": 0, "data": {"results": [{"id": "1", '), "not JSON"),
        (Reply(raw=b"<html>proxy login</html>"), "not JSON"),
        (Reply(body={"code": 40301, "message": "quota exceeded"}), "error code 40301"),
        (Reply(body={"hits": []}), "no list of results"),
        (Reply(body="just a string"), "no list of results"),
    ],
)
def test_an_error_answer_is_no_passages_and_is_not_cached(
    fake: FakeTaxKB, caplog: pytest.LogCaptureFixture, reply: Reply, logged: str
) -> None:
    fake.script(reply)
    kb = adapter(fake)
    with caplog.at_level(logging.WARNING, logger="infra.taxkb"):
        assert kb.search("发票", 3) == []
    assert logged in caplog.text and KEY not in caplog.text
    assert [p.id for p in kb.search("发票", 3)]  # the next question asks again and gets passages
    assert kb.calls == 2


def test_a_refused_connection_is_no_passages(caplog: pytest.LogCaptureFixture) -> None:
    kb = TaxKBKnowledgeBase("http://127.0.0.1:9", KEY, timeout_s=1.0)
    with caplog.at_level(logging.WARNING, logger="infra.taxkb"):
        assert kb.search("发票", 3) == []
    assert "request failed (ConnectError)" in caplog.text and KEY not in caplog.text


def test_answers_are_cached_for_the_ttl(fake: FakeTaxKB) -> None:
    clock = Clock()
    kb = adapter(fake, cache_ttl_s=60.0, clock=clock)
    first = kb.search("增值税起征点", 3)
    assert first and kb.search("  增值税起征点 ", 3) == first  # the same question, spaces aside
    assert kb.calls == 1 and len(fake.requests) == 1
    kb.search("增值税起征点", 1)  # another limit is another question
    assert kb.calls == 2
    clock.now += 59.9
    kb.search("增值税起征点", 3)
    assert kb.calls == 2
    clock.now += 0.1
    assert kb.search("增值税起征点", 3) == first
    assert kb.calls == 3


def test_no_cache_with_a_zero_ttl_and_nothing_sent_for_an_empty_query(fake: FakeTaxKB) -> None:
    kb = adapter(fake, cache_ttl_s=0)
    kb.search("发票", 3)
    kb.search("发票", 3)
    assert kb.search("   ", 3) == [] and kb.search("发票", 0) == []
    assert kb.calls == 2


def test_a_configured_path_and_no_key(fake: FakeTaxKB) -> None:
    with FakeTaxKB(api_key=None, path="/api/v3/knowledge/search") as open_kb:
        kb = TaxKBKnowledgeBase(open_kb.base_url + "/", None, search_path="api/v3/knowledge/search")
        assert kb.search("发票", 3)
        [request] = open_kb.requests
        assert request.path == "/api/v3/knowledge/search" and request.authorization is None


def test_answers_are_read_leniently() -> None:
    bare = [{"doc_id": 7, "question": "Q", "answer": "A", "relevance": 0.5, "url": "https://kb/7"}]
    [p] = read_answer(bare, 5)
    assert (p.id, p.title, p.text, p.score, p.source) == ("taxkb:7", "Q", "A", 0.5, "https://kb/7")
    nested = {
        "data": {"items": [{"id": "a", "text": "x", "score": 0.1}, {"id": "b", "content": "y", "score": 0.9}]}
    }
    assert [p.id for p in read_answer(nested, 5)] == ["taxkb:b", "taxkb:a"]
    skipped = {"results": [{"id": "a"}, {"text": "no id"}, "junk", {"id": "c", "text": "ok", "score": True}]}
    assert [(p.id, p.score) for p in read_answer(skipped, 5)] == [("taxkb:c", 0.0)]
    assert len(read_answer({"code": "0", "results": [{"id": i, "text": "t"} for i in range(9)]}, 3)) == 3
