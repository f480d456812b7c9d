"""The knowledge base in the embedded PostgreSQL (infra/knowledge.py, migration 0012): import of each
format, re-import changes nothing, --replace removes what a file no longer has, ranking, a failing
database answers no passages, and the factory picks what the settings configure."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import psycopg
import pytest

from infra.knowledge import (
    KnowledgeBaseConfigError,
    PostgresKnowledgeBase,
    backend_name,
    import_entries,
    knowledge_base_from_settings,
    search,
    tsquery_literal,
    tsvector_literal,
)
from infra.taxkb import TaxKBKnowledgeBase
from operators.knowledge import KbEntry, KnowledgeBase, parse_file
from worktool.settings import Settings

pytestmark = pytest.mark.integration

MARKDOWN = """# 售后指南

## 仅退款
买家没有收到货，可以申请仅退款，商家在售后列表里同意即可。

## 保证金
保证金按经营类目缴纳，店铺注销后可以申请退还。
"""
CSV = "question,answer,tags\n怎么绑定手机号？,在账号与安全里绑定手机号。,手机号\n扫码登录提示过期怎么办？,刷新页面重新生成二维码。,扫码;二维码\n"
JSONL = (
    '{"question": "申诉要上传自拍视频怎么拍？", "answer": "手持身份证正对镜头，读出数字。", "tags": ["申诉"]}\n'
    '{"title": "私下交易的风险", "text": "引导买家私下转账属于违规，会被扣分甚至封店。"}\n'
)


@pytest.fixture
def kb_url(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


@pytest.fixture
def conn(kb_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(kb_url, autocommit=True) as c:
        yield c


def rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT title, source, source_line, tags FROM kb_passages ORDER BY title").fetchall()


@pytest.mark.parametrize(
    ("name", "text", "titles"),
    [
        ("guide.md", MARKDOWN, ["售后指南 › 仅退款", "售后指南 › 保证金"]),
        ("faq.csv", CSV, ["怎么绑定手机号？", "扫码登录提示过期怎么办？"]),
        ("faq.jsonl", JSONL, ["申诉要上传自拍视频怎么拍？", "私下交易的风险"]),
    ],
)
def test_each_format_imports_and_is_found(
    conn: psycopg.Connection, name: str, text: str, titles: list[str]
) -> None:
    result = import_entries(conn, parse_file(name, text), name)
    assert (result.read, result.inserted) == (2, 2)
    assert sorted(t for t, *_ in rows(conn)) == sorted(titles)
    for title in titles:
        [best, *_] = search(conn, title, 3)
        assert best.title == title and best.source.startswith(f"{name}:") and best.score > 0


def test_reimport_changes_nothing_and_a_move_is_an_update(conn: psycopg.Connection) -> None:
    entries = parse_file("faq.csv", CSV)
    first = import_entries(conn, entries, "faq.csv")
    before = conn.execute("SELECT passage_id, updated_at FROM kb_passages ORDER BY 1").fetchall()
    again = import_entries(conn, entries, "faq.csv")
    assert (first.inserted, again.inserted, again.updated, again.unchanged) == (2, 0, 0, 2)
    assert conn.execute("SELECT passage_id, updated_at FROM kb_passages ORDER BY 1").fetchall() == before

    # The same content from another file: one row, now of that file.
    moved = import_entries(conn, parse_file("other.csv", "\n" + CSV), "other.csv")
    assert (moved.inserted, moved.updated) == (0, 2)
    assert {(s, line) for _, s, line, _ in rows(conn)} == {("other.csv", 3), ("other.csv", 4)}


def test_repeats_within_a_file_are_one_passage(conn: psycopg.Connection) -> None:
    result = import_entries(conn, parse_file("dup.csv", CSV + CSV.split("\n", 1)[1]), "dup.csv")
    assert (result.read, result.inserted, result.duplicates) == (4, 2, 2)


def test_replace_removes_what_the_file_no_longer_has(conn: psycopg.Connection) -> None:
    import_entries(conn, parse_file("faq.csv", CSV), "faq.csv")
    import_entries(conn, parse_file("guide.md", MARKDOWN), "guide.md")
    edited = "question,answer\n怎么绑定手机号？,在账号与安全里绑定手机号。\n新问题？,新答案。\n"
    result = import_entries(conn, parse_file("faq.csv", edited), "faq.csv", replace=True)
    assert (result.inserted, result.unchanged, result.updated, result.removed) == (1, 0, 1, 1)
    assert sorted(t for t, *_ in rows(conn)) == sorted(
        ["怎么绑定手机号？", "新问题？", "售后指南 › 仅退款", "售后指南 › 保证金"]
    )


def test_a_failed_import_leaves_the_table_as_it_was(conn: psycopg.Connection) -> None:
    import_entries(conn, parse_file("faq.csv", CSV), "faq.csv")
    bad = [*parse_file("more.csv", "a?,b\n"), KbEntry(kind="qa", title="x", text="y\x00", line=2)]
    with pytest.raises(psycopg.DataError):
        import_entries(conn, bad, "more.csv")
    assert len(rows(conn)) == 2


def test_title_words_outrank_text_words_and_stop_words_match_nothing(conn: psycopg.Connection) -> None:
    text = (
        "question,answer\n"
        "保证金怎么退？,店铺注销后申请。\n"
        "店铺怎么注销？,先退保证金以外的款项，再申请注销，保证金随后退还。\n"
    )
    import_entries(conn, parse_file("x.csv", text), "x.csv")
    found = search(conn, "保证金", 5)
    assert [p.title for p in found] == ["保证金怎么退？", "店铺怎么注销？"]
    assert found[0].score > found[1].score
    assert search(conn, "怎么办呢？", 5) == []
    assert search(conn, "完全无关的天气预报", 5) == []
    assert len(search(conn, "保证金 注销", 1)) == 1


def test_quotes_and_backslashes_in_terms_are_literal(conn: psycopg.Connection) -> None:
    weird = KbEntry(kind="qa", title="it's a \\path", text="o'clock", line=1)
    import_entries(conn, [weird], "x.jsonl")
    assert [p.title for p in search(conn, "it's", 3)] == ["it's a \\path"]
    assert tsquery_literal([]) is None
    assert tsvector_literal([("a'b", "A"), ("c", "D"), ("a'b", "D")]) == "'a''b':1A,3D 'c':2D"


def test_the_postgres_knowledge_base_answers_none_when_the_database_fails(
    kb_url: str, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    kb = PostgresKnowledgeBase("postgresql://nobody:secret-pw@127.0.0.1:1/none", timeout_s=1.0)
    with caplog.at_level(logging.WARNING):
        assert kb.search("保证金", 3) == []
    kb.close()
    assert "search failed" in caplog.text and "secret-pw" not in caplog.text

    conn.execute("DROP TABLE kb_passages")
    missing = PostgresKnowledgeBase(kb_url, timeout_s=2.0)
    with caplog.at_level(logging.WARNING):
        assert missing.search("保证金", 3) == []
    missing.close()
    assert "kb_passages does not exist" in caplog.text


def test_the_postgres_knowledge_base_searches(kb_url: str, conn: psycopg.Connection) -> None:
    import_entries(conn, parse_file("faq.csv", CSV), "faq.csv")
    kb = PostgresKnowledgeBase(kb_url)
    try:
        assert isinstance(kb, KnowledgeBase)
        [best, *_] = kb.search("手机号怎么绑", 2)
        assert best.title == "怎么绑定手机号？" and best.source == "faq.csv:2"
        assert kb.search("", 2) == [] and kb.search("！？", 2) == []
    finally:
        kb.close()


def test_the_factory_prefers_the_remote_then_postgres_then_none() -> None:
    remote = Settings(WORKTOOL_TAXKB_BASE_URL="http://127.0.0.1:9", DATABASE_URL="postgresql://x@h/db")
    local = Settings(DATABASE_URL="postgresql://x@h/db")
    nothing = Settings(DATABASE_URL=None)
    assert isinstance(knowledge_base_from_settings(remote), TaxKBKnowledgeBase)
    assert isinstance(knowledge_base_from_settings(local), PostgresKnowledgeBase)
    assert knowledge_base_from_settings(nothing) is None
    assert [backend_name(s) for s in (remote, local, nothing)] == ["taxkb", "postgres", "none"]

    forced = remote.model_copy(update={"kb_backend": "postgres"})
    assert isinstance(knowledge_base_from_settings(forced), PostgresKnowledgeBase)
    assert knowledge_base_from_settings(remote.model_copy(update={"kb_backend": "off"})) is None
    with pytest.raises(KnowledgeBaseConfigError, match="WORKTOOL_TAXKB_BASE_URL"):
        knowledge_base_from_settings(local.model_copy(update={"kb_backend": "taxkb"}))
    with pytest.raises(KnowledgeBaseConfigError, match="DATABASE_URL"):
        knowledge_base_from_settings(nothing.model_copy(update={"kb_backend": "postgres"}))
