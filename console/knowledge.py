"""The knowledge base in the console: `GET /api/kb/search?q=&limit=`.

Asks the knowledge base the settings configure, as the reply path does (infra/knowledge.py): the remote
TaxKB when WORKTOOL_TAXKB_BASE_URL is set (its client, with its cache, lives as long as the app; called
in a worker thread), else the passages `worktool kb import` put into the console's database (ts_rank over
the segmented words). Answers the backend, the query's terms as segmented, and the passages best first.
Permission `read`: every role may read the knowledge base.
"""

from __future__ import annotations

from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from console.actions import ServiceUnavailable
from console.auth import AUTH_ERRORS, Principal, require
from console.common import connection, line_text, pool_of
from console.permissions import Permission
from infra.knowledge import MAX_LIMIT, SEARCH_SQL, backend_name, passage_of, search_params
from operators.knowledge import MAX_QUERY_CHARS, KnowledgeBase, Passage, query_terms

QueryText = line_text(MAX_QUERY_CHARS, min_length=1, strip=True)


class KbSearchAnswer(BaseModel):
    query: str
    backend: Literal["postgres", "taxkb", "none"] = Field(
        description="Which knowledge base answered (none: WORKTOOL_KB=off, or nothing configured)."
    )
    terms: list[str] = Field(description="The query's words as the segmenter cut them (local search).")
    items: list[Passage]


kb_router = APIRouter(prefix="/api/kb", tags=["knowledge base"], responses=AUTH_ERRORS)


def _remote(request: Request) -> KnowledgeBase:
    """The app's TaxKB client (created on first use, so that its cache serves every request)."""
    state = request.app.state
    if getattr(state, "kb_remote", None) is None:
        from infra.knowledge import knowledge_base_from_settings

        state.kb_remote = knowledge_base_from_settings(state.settings)
    return state.kb_remote


@kb_router.get("/search")
async def search_kb(
    _: Annotated[Principal, require(Permission.READ)],
    request: Request,
    q: Annotated[QueryText, Query(description="The question, in Chinese as an owner asks it.")],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many passages.")] = 5,
) -> KbSearchAnswer:
    """Passages of the configured knowledge base for a question, best first (a remote that fails or
    times out answers none, as it would in the reply path)."""
    backend = backend_name(request.app.state.settings)
    terms = query_terms(q)
    if backend == "none":
        return KbSearchAnswer(query=q, backend="none", terms=terms, items=[])
    if backend == "taxkb":
        items = await run_in_threadpool(_remote(request).search, q, limit)
        return KbSearchAnswer(query=q, backend="taxkb", terms=terms, items=items)
    params = search_params(q, limit)
    if params is None:
        return KbSearchAnswer(query=q, backend="postgres", terms=terms, items=[])
    try:
        async with connection(pool_of(request), "cannot read kb_passages") as conn, conn.cursor() as cur:
            await cur.execute(SEARCH_SQL, params)
            rows = await cur.fetchall()
    except psycopg.errors.UndefinedTable:
        raise ServiceUnavailable(
            "kb_passages does not exist: apply the migrations (worktool migrate up)"
        ) from None
    return KbSearchAnswer(query=q, backend="postgres", terms=terms, items=[passage_of(r) for r in rows])


KB_ROUTERS = (kb_router,)
__all__ = ["KB_ROUTERS", "KbSearchAnswer"]
