"""The knowledge base in PostgreSQL (table kb_passages, migration 0012), and the factory that picks the
knowledge base the settings configure.

- `import_entries`: upserts parsed entries (operators/knowledge.py) by content hash, so re-importing a
  file changes nothing; `replace=True` also deletes the passages of the same source that the file no
  longer has. One transaction: a failed import leaves the table as it was.
- Search: the query's terms (rjieba, as at import) OR-ed into a tsquery, matched against the GIN-indexed
  tsvector and ranked with ts_rank (title words weigh A, tags B, text D; RANK_WEIGHTS). `SEARCH_SQL` is shared by the
  synchronous `PostgresKnowledgeBase` (the reply path) and the console's async endpoint.
- `knowledge_base_from_settings`: TaxKB when WORKTOOL_TAXKB_BASE_URL is set, else PostgreSQL when a
  database URL is, else None (WORKTOOL_KB=taxkb|postgres|off decides explicitly).

The tsvector is written as a literal ('词':1A,5D ...) rather than with to_tsvector: PostgreSQL's parser
would split the words again by its own rules (and, in a C-locale database, drop Chinese characters).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from operators.knowledge import KbEntry, KnowledgeBase, Passage, Weight, query_terms
from worktool.settings import Settings

log = logging.getLogger(__name__)

MAX_LIMIT = 50
MAX_POSITION = 16383  # tsvector positions run 1..16383
MAX_POSITIONS_PER_LEXEME = 256
MAX_LEXEME_BYTES = 2046
# ts_rank's weights for D, C, B, A (PostgreSQL's order): the question or heading counts most, the text
# half as much. No length normalization: passages are at most MAX_PASSAGE_CHARS. Measured on the shipped
# set (benchmarks/README.md, "Knowledge base"): the best top-3 and MRR of the variants tried.
RANK_WEIGHTS = "{0.5, 0.5, 0.8, 1.0}"
RANK_NORMALIZATION = 0


def segmenter_name() -> str:
    try:
        return f"rjieba {metadata.version('rjieba')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - rjieba is a dependency
        return "rjieba"


def _quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_literal(terms: Iterable[tuple[str, Weight]]) -> str:
    """A tsvector in PostgreSQL's text form: each distinct term with its positions (in order, 1-based)
    and weights."""
    positions: dict[str, list[str]] = {}
    for position, (term, weight) in enumerate(terms, 1):
        if position > MAX_POSITION:
            break
        if len(term.encode()) > MAX_LEXEME_BYTES:
            continue
        at = positions.setdefault(term, [])
        if len(at) < MAX_POSITIONS_PER_LEXEME:
            at.append(f"{position}{weight}")
    return " ".join(f"{_quote(term)}:{','.join(at)}" for term, at in positions.items())


def tsquery_literal(terms: Sequence[str]) -> str | None:
    """The terms OR-ed: a passage matching more of them ranks higher. None without terms."""
    usable = [t for t in terms if len(t.encode()) <= MAX_LEXEME_BYTES]
    return " | ".join(_quote(t) for t in usable) or None


SEARCH_SQL_TEMPLATE = """
SELECT passage_id, title, body, source, source_line,
       ts_rank('{weights}', search_vector, query, {normalization}) AS score
FROM kb_passages, CAST(%(query)s AS tsquery) AS query
WHERE search_vector @@ query
ORDER BY score DESC, passage_id
LIMIT %(limit)s
"""
SEARCH_SQL = SEARCH_SQL_TEMPLATE.format(weights=RANK_WEIGHTS, normalization=RANK_NORMALIZATION)


def search_params(query: str, limit: int) -> dict[str, Any] | None:
    """SEARCH_SQL's parameters, or None when the query has no terms (only punctuation or stop words)."""
    literal = tsquery_literal(query_terms(query))
    if literal is None:
        return None
    return {"query": literal, "limit": max(1, min(limit, MAX_LIMIT))}


def passage_of(row: Sequence[Any]) -> Passage:
    passage_id, title, body, source, line, score = row
    return Passage(id=passage_id, title=title, text=body, source=f"{source}:{line}", score=float(score))


# ---------------------------------------------------------------------------------------------
# Import


@dataclass
class ImportResult:
    read: int = 0  # entries in the file
    inserted: int = 0
    updated: int = 0  # known content, now attributed to this source / line / tags
    unchanged: int = 0
    duplicates: int = 0  # entries repeating an earlier one of the same file
    removed: int = 0  # with replace: this source's passages the file no longer has


_UPSERT = """
INSERT INTO kb_passages
    (passage_id, content_hash, kind, title, body, tags, source, source_line, segmenter, search_vector)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, CAST(%s AS tsvector))
ON CONFLICT (content_hash) DO UPDATE SET
    tags = EXCLUDED.tags, source = EXCLUDED.source, source_line = EXCLUDED.source_line,
    segmenter = EXCLUDED.segmenter, search_vector = EXCLUDED.search_vector, updated_at = now()
WHERE (kb_passages.tags, kb_passages.source, kb_passages.source_line, kb_passages.segmenter)
    IS DISTINCT FROM (EXCLUDED.tags, EXCLUDED.source, EXCLUDED.source_line, EXCLUDED.segmenter)
RETURNING (xmax = 0) AS inserted
"""


def import_entries(
    conn: psycopg.Connection[Any],
    entries: Sequence[KbEntry],
    source: str,
    *,
    replace: bool = False,
    on_entry: Callable[[], None] | None = None,
) -> ImportResult:
    """Upsert `entries` as passages of `source` in one transaction (module doc)."""
    result = ImportResult(read=len(entries))
    segmenter = segmenter_name()
    seen: set[str] = set()
    with conn.transaction(), conn.cursor() as cur:
        for entry in entries:
            digest = entry.content_hash
            if digest in seen:
                result.duplicates += 1
            else:
                seen.add(digest)
                cur.execute(
                    _UPSERT,
                    (
                        entry.passage_id, digest, entry.kind, entry.title, entry.text, list(entry.tags),
                        source, entry.line, segmenter, tsvector_literal(entry.weighted_terms()),
                    ),
                )  # fmt: skip
                row = cur.fetchone()
                if row is None:
                    result.unchanged += 1
                elif row[0]:
                    result.inserted += 1
                else:
                    result.updated += 1
            if on_entry is not None:
                on_entry()
        if replace:
            cur.execute(
                "DELETE FROM kb_passages WHERE source = %s AND NOT (content_hash = ANY(%s))",
                (source, list(seen)),
            )
            result.removed = cur.rowcount
    return result


def count_passages(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM kb_passages").fetchone()
    return int(row[0]) if row else 0


def search(conn: psycopg.Connection[Any], query: str, limit: int = 5) -> list[Passage]:
    """The best `limit` passages for `query` (raises on database errors; see PostgresKnowledgeBase)."""
    params = search_params(query, limit)
    if params is None:
        return []
    return [passage_of(row) for row in conn.execute(SEARCH_SQL, params).fetchall()]


# ---------------------------------------------------------------------------------------------
# The knowledge base the reply path asks


class PostgresKnowledgeBase:
    """kb_passages as a KnowledgeBase: a small pool opened on first use; a database that fails or is
    slower than `timeout_s` is logged and answered with no passages."""

    name = "postgres"

    def __init__(self, database_url: str, *, timeout_s: float = 3.0, max_size: int = 2) -> None:
        self._url = database_url
        self._timeout_s = timeout_s
        self._max_size = max_size
        self._pool: ConnectionPool | None = None

    def _connections(self) -> ConnectionPool:
        if self._pool is None:
            statement_timeout_ms = int(self._timeout_s * 1000)
            self._pool = ConnectionPool(
                self._url,
                min_size=0,
                max_size=self._max_size,
                timeout=self._timeout_s,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": max(1, int(self._timeout_s)),
                    "options": f"-c statement_timeout={statement_timeout_ms}",
                },
                check=ConnectionPool.check_connection,
                open=True,
            )
        return self._pool

    def search(self, query: str, limit: int = 5) -> list[Passage]:
        try:
            with self._connections().connection() as conn:
                return search(conn, query, limit)
        except psycopg.errors.UndefinedTable:
            log.warning("knowledge base: kb_passages does not exist (worktool migrate up); no passages")
        except Exception as e:  # never into the reply path
            log.warning("knowledge base: search failed (%s: %s); no passages", type(e).__name__, e)
        return []

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class KnowledgeBaseConfigError(ValueError):
    """WORKTOOL_KB names a knowledge base that is not configured."""


def knowledge_base_from_settings(settings: Settings, database_url: str | None = None) -> KnowledgeBase | None:
    """TaxKB if its base URL is set, else PostgreSQL (`database_url`, default DATABASE_URL) if a database
    is, else None; WORKTOOL_KB=taxkb|postgres insists on one (KnowledgeBaseConfigError when it is not
    configured), WORKTOOL_KB=off gives None."""
    from infra.taxkb import TaxKBKnowledgeBase

    backend = settings.kb_backend
    if backend == "off":
        return None
    base_url = (settings.taxkb_base_url or "").strip()
    if backend in ("auto", "taxkb") and base_url:
        return TaxKBKnowledgeBase(
            base_url,
            settings.taxkb_api_key,
            timeout_s=settings.taxkb_timeout_s,
            cache_ttl_s=settings.taxkb_cache_ttl_s,
            search_path=settings.taxkb_search_path,
        )
    if backend == "taxkb":
        raise KnowledgeBaseConfigError("WORKTOOL_KB=taxkb needs WORKTOOL_TAXKB_BASE_URL")
    url = database_url or settings.database_url
    if url:
        return PostgresKnowledgeBase(url)
    if backend == "postgres":
        raise KnowledgeBaseConfigError("WORKTOOL_KB=postgres needs DATABASE_URL")
    return None


def backend_name(settings: Settings) -> str:
    """Which knowledge base the settings pick, without creating it: taxkb, postgres or none."""
    if settings.kb_backend == "off":
        return "none"
    if settings.kb_backend in ("auto", "taxkb") and (settings.taxkb_base_url or "").strip():
        return "taxkb"
    if settings.kb_backend == "taxkb":
        return "none"
    return "postgres" if settings.kb_backend == "postgres" or settings.database_url else "none"
