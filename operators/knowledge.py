"""The knowledge base's pure parts: what a passage is, the one interface the reply path asks, Chinese
word segmentation for the full-text index and its queries, and the readers of the files `worktool kb
import` takes (Markdown articles, CSV and JSONL questions and answers).

- `Passage` (id, title, text, source, score) is what every knowledge base answers; `KnowledgeBase` is the
  protocol (`search(query, limit) -> list[Passage]`) that the PostgreSQL store and the remote TaxKB
  adapter implement (infra/knowledge.py, infra/taxkb.py; `knowledge_base_from_settings` picks one).
- Words come from rjieba (jieba-rs, jieba's dictionary and algorithm) in its search mode, which adds the
  shorter words inside a long one (人脸识别 -> 人脸, 识别, 人脸识别; 营业执照 -> 营业, 执照, 营业执照), so
  a question that says 人脸 finds a passage that says 人脸识别. The same function segments at import and at query time;
  punctuation and a short list of function words (的, 怎么, 可以 ...) are not terms.
- `parse_file` turns a file's text into `KbEntry`s, each with the line it starts on; anything it cannot
  read is a `KbFileError` naming the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

# A passage longer than this is split at paragraph (then sentence) ends.
MAX_PASSAGE_CHARS = 1200
MAX_TITLE_CHARS = 500
MAX_QUERY_TERMS = 32
MAX_QUERY_CHARS = 500

EntryKind = Literal["qa", "article"]
Weight = Literal["A", "B", "C", "D"]

# Words that occur in nearly every question and say nothing about which passage answers it. Single
# function characters and question words; not domain vocabulary.
STOP_WORDS = frozenset(
    ["的", "地", "得", "了", "着", "过", "吗", "嘛", "呢", "吧", "啊", "呀", "哦", "哈", "么", "啦", "呗", "喔", "嗯", "是", "在", "和", "与", "及", "或", "或者", "而", "就", "都", "也", "还", "又", "很", "太", "把", "被", "让", "给", "对", "从", "向", "于", "以", "之", "其", "这", "那", "这个", "那个", "这样", "那样", "一下", "一个", "一些", "有", "有没有", "我", "你", "您", "他", "她", "它", "我们", "你们", "他们", "咱们", "自己", "怎么", "怎么办", "怎样", "怎么样", "如何", "什么", "为什么", "为啥", "啥", "哪", "哪里", "哪儿", "哪个", "几", "多少", "吗", "能", "能不能", "可以", "可不可以", "会", "要", "想", "请问", "请", "一直", "老是", "总是", "还是", "已经", "然后", "如果", "的话", "就是", "但是", "因为", "所以"]
)  # fmt: skip


class Passage(BaseModel):
    """One passage a knowledge base found: what the reply path may quote, and where it came from."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable id within its knowledge base (kb_... locally, taxkb:... remote).")
    title: str = Field(description="The question, or the article's heading path.")
    text: str = Field(description="The answer or the section's text.")
    source: str = Field(description="Where it came from: <file>:<line> locally, the remote's source.")
    score: float = Field(description="Relevance as its knowledge base ranks it (higher is better).")


@runtime_checkable
class KnowledgeBase(Protocol):
    """What the reply path asks. An implementation never raises: a knowledge base that cannot answer
    logs why and returns no passages."""

    name: str  # "postgres", "taxkb"

    def search(self, query: str, limit: int = 5) -> list[Passage]: ...


# ---------------------------------------------------------------------------------------------
# Segmentation


@cache
def _cut_for_search() -> Callable[[str], list[str]]:
    import rjieba  # loads its dictionary (~0.2 s): only when a knowledge base is used

    return rjieba.cut_for_search


def normalize(text: str) -> str:
    """NFKC (full-width letters and digits to ASCII, compatibility forms folded) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def _is_term(word: str) -> bool:
    if not word or word in STOP_WORDS:
        return False
    # Punctuation, symbols, spaces and controls are not terms; a word needs a letter or a digit.
    return any(unicodedata.category(c)[0] in "LN" for c in word)


def segment(text: str) -> list[str]:
    """The terms of `text` in order (repeats kept): rjieba's search-mode words, normalized, without
    punctuation and stop words."""
    return [w.strip() for w in _cut_for_search()(normalize(text)) if _is_term(w.strip())]


def query_terms(query: str) -> list[str]:
    """The distinct terms of a query, in order, at most MAX_QUERY_TERMS (from its first
    MAX_QUERY_CHARS characters)."""
    seen: dict[str, None] = {}
    for term in segment(query[:MAX_QUERY_CHARS]):
        seen.setdefault(term, None)
    return list(seen)[:MAX_QUERY_TERMS]


# ---------------------------------------------------------------------------------------------
# Entries read from a file


class KbEntry(BaseModel):
    """One passage to store: a question and its answer, or a section of an article."""

    model_config = ConfigDict(frozen=True)

    kind: EntryKind
    title: str
    text: str
    tags: tuple[str, ...] = ()
    line: int  # the line of the file it starts on (1-based)

    @property
    def content_hash(self) -> str:
        """sha256 of the kind, title and text, whitespace collapsed and NFKC-normalized: the same
        passage imported twice (from any file) is one row."""
        parts = (self.kind, _canonical(self.title), _canonical(self.text))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    @property
    def passage_id(self) -> str:
        return "kb_" + self.content_hash[:24]

    def weighted_terms(self) -> list[tuple[str, Weight]]:
        """The terms to index, in order, with their weight: the title (question, heading) A, the tags B,
        the text (answer, section) D."""
        return [
            *((t, "A") for t in segment(self.title)),
            *((t, "B") for t in segment(" ".join(self.tags))),
            *((t, "D") for t in segment(self.text)),
        ]


def _canonical(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


class KbFileError(ValueError):
    """A file `worktool kb import` cannot read; `line` is where (None: the file as a whole)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


FORMATS = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def file_format(name: str) -> str:
    """markdown, csv or jsonl, from the file name's suffix."""
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    if suffix not in FORMATS:
        raise KbFileError(
            f"cannot tell the format of {name!r}: expected a .md, .markdown, .csv, .jsonl or .ndjson file"
        )
    return FORMATS[suffix]


def decode(data: bytes, encoding: str = "utf-8") -> str:
    """The file's text (a UTF-8 byte-order mark is dropped); undecodable bytes are an error on their line."""
    try:
        text = data.decode(
            "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        )
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise KbFileError(
            f"not valid {encoding} (byte 0x{data[e.start]:02x}); save the file as UTF-8 or pass --encoding "
            "(e.g. gb18030 for a CSV from Excel)",
            line,
        ) from None
    except LookupError:
        raise KbFileError(f"unknown encoding {encoding!r}") from None
    if "\x00" in text:
        raise KbFileError(
            "contains NUL characters: not a text file", text.count("\n", 0, text.index("\x00")) + 1
        )
    return text


def parse_file(name: str, text: str) -> list[KbEntry]:
    """The entries of a file, by its suffix (file_format). A file without any passage is an error."""
    fmt = file_format(name)
    entries = {"markdown": parse_markdown, "csv": parse_csv, "jsonl": parse_jsonl}[fmt](text)
    if not entries:
        raise KbFileError(f"no passages in this {fmt} file")
    return entries


# -- Markdown ------------------------------------------------------------------------------------

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")


def parse_markdown(text: str) -> list[KbEntry]:
    """Articles: every ATX heading (#, ##, ...) starts a passage titled with its heading path
    ("退款 › 仅退款"); text before the first heading is a passage titled with the first heading, or
    "untitled". Headings inside fenced code blocks are text. Sections without text are skipped; long
    ones are split (MAX_PASSAGE_CHARS)."""
    lines = text.splitlines()
    start = _front_matter_end(lines)
    path: list[tuple[int, str]] = []  # (level, heading) of the current section
    body: list[str] = []
    body_line = start + 1
    fence: str | None = None
    entries: list[KbEntry] = []

    def flush() -> None:
        title = " › ".join(h for _, h in path) or _first_heading(lines[start:]) or "untitled"
        entries.extend(_sections(title, "\n".join(body).strip(), body_line))

    for number, line in enumerate(lines[start:], start + 1):
        if (m := _FENCE.match(line)) and (fence is None or m.group(1)[0] == fence[0]):
            fence = None if fence is not None else m.group(1)
        heading = _HEADING.match(line) if fence is None else None
        if heading is None:
            body.append(line)
            continue
        flush()
        level, title = len(heading.group(1)), (heading.group(2) or "").strip()
        if not title:
            raise KbFileError("a heading without text", number)
        if len(title) > MAX_TITLE_CHARS:
            raise KbFileError(f"a heading longer than {MAX_TITLE_CHARS} characters", number)
        path = [*(p for p in path if p[0] < level), (level, title)]
        body, body_line = [], number
    if fence is not None:
        raise KbFileError(f"a code block opened with {fence} is never closed", None)
    flush()
    return entries


def _front_matter_end(lines: list[str]) -> int:
    """Lines of a leading YAML front matter block (--- ... ---), or 0."""
    if lines and lines[0].strip() == "---":
        for i, line in enumerate(lines[1:], 1):
            if line.strip() in ("---", "..."):
                return i + 1
        raise KbFileError("front matter opened with --- is never closed", 1)
    return 0


def _first_heading(lines: list[str]) -> str | None:
    for line in lines:
        if (m := _HEADING.match(line)) and m.group(2):
            return m.group(2).strip()
    return None


def _sections(title: str, text: str, line: int) -> Iterator[KbEntry]:
    for chunk in _chunks(text):
        yield KbEntry(kind="article", title=title, text=chunk, line=line)


def _chunks(text: str) -> Iterator[str]:
    """`text` in pieces of at most MAX_PASSAGE_CHARS, cut at blank lines, then at sentence ends."""
    if not text:
        return
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        if len(paragraph) <= MAX_PASSAGE_CHARS:
            pieces.append(paragraph.strip())
        else:
            pieces.extend(s for s in _SENTENCE_END.split(paragraph) if s.strip())
    current = ""
    for piece in pieces:
        while len(piece) > MAX_PASSAGE_CHARS:  # one sentence longer than a passage: cut it
            if current:
                yield current
                current = ""
            yield piece[:MAX_PASSAGE_CHARS]
            piece = piece[MAX_PASSAGE_CHARS:]
        if current and len(current) + 2 + len(piece) > MAX_PASSAGE_CHARS:
            yield current
            current = ""
        current = f"{current}\n\n{piece}" if current else piece
    if current.strip():
        yield current


# -- CSV -----------------------------------------------------------------------------------------

_COLUMN_NAMES = {
    "question": "question", "q": "question", "问题": "question", "标题": "question",
    "answer": "answer", "a": "answer", "答案": "answer", "回答": "answer", "内容": "answer",
    "tags": "tags", "tag": "tags", "标签": "tags",
}  # fmt: skip
_TAG_SPLIT = re.compile(r"[;,|；，、]+")


def parse_csv(text: str) -> list[KbEntry]:
    """Questions and answers: columns question, answer and optionally tags (tags separated by ; , | or
    their full-width forms). A first row naming the columns (question/answer/tags, or 问题/答案/标签) is a
    header and may order them; without one the columns are in that order."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: dict[str, int] | None = None
    entries: list[KbEntry] = []
    line = 1
    try:
        for row in reader:
            row_line, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                columns = _header(row, row_line)
                if columns is not None:
                    continue
                columns = {"question": 0, "answer": 1, "tags": 2}
                if len(row) > 3:
                    raise KbFileError(
                        f"{len(row)} columns: expected question,answer[,tags] (or a header row naming them)",
                        row_line,
                    )
            entries.append(_csv_entry(row, columns, row_line))
    except csv.Error as e:
        raise KbFileError(f"malformed CSV: {e}", line) from None
    return entries


def _header(row: list[str], line: int) -> dict[str, int] | None:
    names = [_COLUMN_NAMES.get(cell.strip().lower()) for cell in row]
    if not any(names):
        return None
    columns: dict[str, int] = {}
    for index, (cell, name) in enumerate(zip(row, names, strict=True)):
        if name is None:
            if cell.strip():
                raise KbFileError(f"unknown column {cell.strip()!r}: expected question, answer, tags", line)
            continue
        if name in columns:
            raise KbFileError(f"column {name} appears twice", line)
        columns[name] = index
    if not {"question", "answer"} <= set(columns):
        raise KbFileError("the header needs a question and an answer column", line)
    return columns


def _csv_entry(row: list[str], columns: dict[str, int], line: int) -> KbEntry:
    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    question, answer = cell("question"), cell("answer")
    if not question:
        raise KbFileError("empty question", line)
    if not answer:
        raise KbFileError(f"no answer to {question[:40]!r}", line)
    return _qa(question, answer, _split_tags(cell("tags")), line)


def _split_tags(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in _TAG_SPLIT.split(value) if t.strip())


def _qa(question: str, answer: str, tags: Iterable[str], line: int) -> KbEntry:
    if len(question) > MAX_TITLE_CHARS:
        raise KbFileError(f"a question longer than {MAX_TITLE_CHARS} characters", line)
    return KbEntry(kind="qa", title=question, text=answer, tags=tuple(tags), line=line)


# -- JSONL ---------------------------------------------------------------------------------------


def parse_jsonl(text: str) -> list[KbEntry]:
    """One JSON object per line: {"question", "answer", "tags"?} or {"title", "text" | "content" |
    "body", "tags"?} (an article: split like a Markdown section when long). Blank lines are skipped."""
    entries: list[KbEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise KbFileError(f"not JSON: {e}", number) from None
        if not isinstance(item, dict):
            raise KbFileError(f"expected a JSON object, found {type(item).__name__}", number)
        entries.extend(_json_entries(item, number))
    return entries


def _json_entries(item: dict[str, object], line: int) -> list[KbEntry]:
    tags = _json_tags(item.get("tags"), line)
    if "question" in item or "answer" in item:
        question, answer = _json_text(item, "question", line), _json_text(item, "answer", line)
        return [_qa(question, answer, tags, line)]
    body_key = next((k for k in ("text", "content", "body") if k in item), None)
    if "title" in item and body_key is not None:
        title, body = _json_text(item, "title", line), _json_text(item, body_key, line)
        if len(title) > MAX_TITLE_CHARS:
            raise KbFileError(f"a title longer than {MAX_TITLE_CHARS} characters", line)
        return [
            KbEntry(kind="article", title=title, text=chunk, tags=tags, line=line) for chunk in _chunks(body)
        ]
    raise KbFileError(
        "expected {question, answer} or {title, text|content|body}, found keys " + ", ".join(sorted(item)),
        line,
    )


def _json_text(item: dict[str, object], key: str, line: int) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise KbFileError(f"{key!r} must be a non-empty string", line)
    return value.strip()


def _json_tags(value: object, line: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return _split_tags(value)
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(t.strip() for t in value if t.strip())
    raise KbFileError("'tags' must be a list of strings or a string", line)
