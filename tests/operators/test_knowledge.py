"""The knowledge base's pure parts (operators/knowledge.py): segmentation, and reading Markdown, CSV and
JSONL files into entries, with the line of anything wrong."""

from __future__ import annotations

import pytest

from operators.knowledge import (
    MAX_PASSAGE_CHARS,
    KbEntry,
    KbFileError,
    KnowledgeBase,
    Passage,
    decode,
    file_format,
    parse_csv,
    parse_file,
    parse_jsonl,
    parse_markdown,
    query_terms,
    segment,
)


def test_segmentation_finds_the_words_and_the_words_inside_them() -> None:
    terms = segment("视频号小店怎么上传营业执照？")
    assert {"视频", "小店", "营业", "执照", "营业执照"} <= set(terms)
    assert "怎么" not in terms and "？" not in terms  # a stop word, punctuation


def test_query_terms_are_distinct_normalized_and_bounded() -> None:
    assert query_terms("ＡＢＣ退款 退款，退款！！") == ["abc", "退款"]  # full-width folded, repeats once
    assert query_terms("怎么办？？？") == []
    assert len(query_terms("退款 " * 10 + " ".join(f"词{i}" for i in range(100)))) <= 32


def test_the_protocol_is_structural() -> None:
    class Fixed:
        name = "fixed"

        def search(self, query: str, limit: int = 5) -> list[Passage]:
            return [Passage(id="x", title="t", text=query, source="s", score=1.0)][:limit]

    assert isinstance(Fixed(), KnowledgeBase)


# -- Markdown ------------------------------------------------------------------------------------

ARTICLE = """---
author: 运营部
---
# 视频号小店售后指南

开头的说明文字。

## 退款

### 仅退款
买家未收到货时可以申请仅退款。

### 退货退款
买家寄回商品后退款。

```
## 这不是标题
```

## 空的一节

## 保证金 ##
保证金按类目缴纳。
"""


def test_markdown_headings_split_passages_titled_with_their_path() -> None:
    entries = parse_markdown(ARTICLE)
    assert [(e.title, e.line) for e in entries] == [
        ("视频号小店售后指南", 4),
        ("视频号小店售后指南 › 退款 › 仅退款", 10),
        ("视频号小店售后指南 › 退款 › 退货退款", 13),
        ("视频号小店售后指南 › 保证金", 22),
    ]
    assert entries[1].text == "买家未收到货时可以申请仅退款。"
    assert "## 这不是标题" in entries[2].text  # a fenced code block is text
    assert {e.kind for e in entries} == {"article"}


def test_a_long_section_is_split_at_paragraphs() -> None:
    paragraph = "这是一句很长的说明。" * 60  # 600 characters
    entries = parse_markdown("# 长文\n\n" + "\n\n".join([paragraph] * 5))
    assert len(entries) >= 3
    assert all(len(e.text) <= MAX_PASSAGE_CHARS for e in entries)
    assert "".join(e.text.replace("\n", "") for e in entries) == paragraph * 5


def test_markdown_without_headings_is_one_untitled_passage() -> None:
    [entry] = parse_markdown("只有一段文字。\n")
    assert entry.title == "untitled" and entry.line == 1


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("# 标题\n正文\n##\n正文", 3, "a heading without text"),
        ("# 标题\n```\n代码\n", None, "never closed"),
        ("---\ntitle: x\n# 标题\n", 1, "front matter"),
    ],
)
def test_bad_markdown_names_the_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(KbFileError) as e:
        parse_markdown(text)
    assert e.value.line == line and message in e.value.message


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_with_a_header_in_any_order_and_tags() -> None:
    text = (
        'tags,answer,question\n"退款;售后","在售后列表里处理。",买家退款怎么处理？\n\n,"空标签也行",问题二\n'
    )
    entries = parse_csv(text)
    assert [(e.title, e.text, e.tags, e.line) for e in entries] == [
        ("买家退款怎么处理？", "在售后列表里处理。", ("退款", "售后"), 2),
        ("问题二", "空标签也行", (), 4),
    ]
    assert {e.kind for e in entries} == {"qa"}


def test_csv_without_a_header_and_with_chinese_headers() -> None:
    assert [e.title for e in parse_csv("问题一,答案一\n问题二,答案二,标签\n")] == ["问题一", "问题二"]
    assert [e.tags for e in parse_csv("问题,答案,标签\n怎么退款,售后列表,退款、售后\n")] == [("退款", "售后")]


def test_csv_line_numbers_count_quoted_line_breaks() -> None:
    text = 'question,answer\n"多行\n问题","多行\n答案"\n第三个问题,\n'
    with pytest.raises(KbFileError) as e:
        parse_csv(text)
    assert e.value.line == 5 and "no answer" in e.value.message  # the quoted record spans lines 2-4


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("question,answer\n,答案\n", 2, "empty question"),
        ("question,answer,notes\n问,答,x\n", 1, "unknown column 'notes'"),
        ("question,question\n", 1, "appears twice"),
        ("tags,question\n", 1, "needs a question and an answer"),
        ("问一,答一,标签一,多余\n", 1, "4 columns"),
        ('question,answer\n问,"没有闭合\n', 2, "malformed CSV"),
    ],
)
def test_bad_csv_names_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(KbFileError) as e:
        parse_csv(text)
    assert e.value.line == line and message in e.value.message, str(e.value)


# -- JSONL ---------------------------------------------------------------------------------------


def test_jsonl_questions_and_articles() -> None:
    text = (
        '{"question": "怎么退款？", "answer": "在售后列表处理。", "tags": ["退款"]}\n'
        "\n"
        '{"title": "保证金说明", "content": "保证金按类目缴纳。", "tags": "资金;保证金"}\n'
    )
    entries = parse_jsonl(text)
    assert [(e.kind, e.title, e.tags, e.line) for e in entries] == [
        ("qa", "怎么退款？", ("退款",), 1),
        ("article", "保证金说明", ("资金", "保证金"), 3),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": \n', 2, "not JSON"),
        ('["q", "a"]\n', 1, "expected a JSON object"),
        ('{"question": "q"}\n', 1, "'answer' must be a non-empty string"),
        ('{"question": "q", "answer": 3}\n', 1, "'answer' must be"),
        ('{"q": "q", "a": "a"}\n', 1, "expected {question, answer}"),
        ('{"question": "q", "answer": "a", "tags": [1]}\n', 1, "'tags' must be"),
    ],
)
def test_bad_jsonl_names_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(KbFileError) as e:
        parse_jsonl(text)
    assert e.value.line == line and message in e.value.message, str(e.value)


# -- files ---------------------------------------------------------------------------------------


def test_format_by_suffix_and_empty_files() -> None:
    assert [file_format(n) for n in ("a.md", "B.MARKDOWN", "c.csv", "d.jsonl", "e.ndjson")] == [
        "markdown", "markdown", "csv", "jsonl", "jsonl",
    ]  # fmt: skip
    with pytest.raises(KbFileError, match="cannot tell the format"):
        file_format("kb.pdf")
    with pytest.raises(KbFileError, match="no passages"):
        parse_file("empty.csv", "question,answer\n")


def test_decoding_names_the_line_of_a_bad_byte() -> None:
    assert decode("\ufeffquestion,answer\n".encode()) == "question,answer\n"  # the BOM is dropped
    with pytest.raises(KbFileError) as e:
        decode("问题,答案\n".encode() + "退款,售后\n".encode("gbk"))
    assert e.value.line == 2 and "--encoding" in e.value.message
    assert decode("退款,售后\n".encode("gbk"), "gb18030") == "退款,售后\n"
    with pytest.raises(KbFileError, match="NUL"):
        decode(b"a\nb\x00")


def test_content_hash_ignores_whitespace_and_tags_but_not_words() -> None:
    a = KbEntry(kind="qa", title="怎么退款？", text="在售后列表  处理。", tags=("a",), line=1)
    b = KbEntry(kind="qa", title=" 怎么退款？", text="在售后列表 处理。", tags=("b",), line=9)
    c = KbEntry(kind="qa", title="怎么退款？", text="在售后列表处理。", line=1)
    assert a.content_hash == b.content_hash != c.content_hash
    assert a.passage_id.startswith("kb_") and len(a.passage_id) == 27


def test_weighted_terms_put_the_title_first() -> None:
    entry = KbEntry(kind="qa", title="保证金怎么退", text="审核通过后原路退回。", tags=("资金",), line=1)
    terms = entry.weighted_terms()
    assert terms[0][1] == "A"
    assert ("资金", "B") in terms and ("退回", "D") in terms
