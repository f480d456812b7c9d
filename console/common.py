"""What the console's routers share: the validated text types of every request string, database
connections that answer 503 when the database does not, pages of results, the error body."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Generic, TypeVar

import psycopg
from fastapi import Query, Request
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import AfterValidator, BaseModel, StringConstraints
from starlette.convertors import PathConvertor, register_url_convertor

from console.actions import ServiceUnavailable

# ---------------------------------------------------------------------------------------------
# Request text: every string a request brings in (query filter, path id, body field) is one of these
# types, so it is checked in one place. PostgreSQL text and jsonb cannot hold NUL (the insert or the
# query fails), control characters have no business in an id, a filter or a name, and lone surrogates
# cannot be encoded as UTF-8: each is a 422 naming the position, never a 500.

MAX_ID_CHARS = 400  # ids and filter values (a session id is "group:<name>" or "user:<name>")
# C0 controls, DEL, C1 controls, lone surrogates; free text may keep tab, line feed and carriage return.
_FORBIDDEN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_FORBIDDEN_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _checker(forbidden: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if (found := forbidden.search(value)) is not None:
            raise ValueError(
                f"{what} at position {found.start()} (U+{ord(found.group()):04X}) is not allowed"
            )
        return value

    return AfterValidator(check)


_LINE = _checker(_FORBIDDEN_LINE, "a control character")
_MULTILINE = _checker(_FORBIDDEN_MULTILINE, "a control character other than tab or newline")


def line_text(max_length: int, *, min_length: int = 0, strip: bool = False) -> Any:
    """A single line: no control character at all (tab and newline included), at most max_length."""
    return Annotated[
        str, StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length), _LINE
    ]


def free_text(max_length: int, *, min_length: int = 0, strip: bool = False) -> Any:
    """Free text typed by a person (a reason): tab and line breaks allowed, other control characters not."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length),
        _MULTILINE,
    ]


# An id or exact-value filter; Query()/Path() is added where it is used.
IdText = line_text(MAX_ID_CHARS, min_length=1)
FilterText = line_text(MAX_ID_CHARS)


class _TextPathConvertor(PathConvertor):
    """`{name:text_path}`: like `path`, but across line breaks too (`path` is `.*`), so that a path id with
    a newline reaches the validation above (422) instead of matching no route."""

    regex = "(?s:.*)"


register_url_convertor("text_path", _TextPathConvertor())

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (at most {MAX_LIMIT}).")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Rows to skip.")]


class Problem(BaseModel):
    detail: str


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: `total` rows match the filters; these are rows offset .. offset+limit."""

    items: list[T]
    total: int
    limit: int
    offset: int


@asynccontextmanager
async def connection(pool: AsyncConnectionPool, what: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection; a database that does not answer becomes ServiceUnavailable (503)."""
    try:
        async with pool.connection() as conn:
            yield conn
    except (PoolTimeout, psycopg.OperationalError) as e:
        raise ServiceUnavailable(f"{what}: {e}") from e


def pool_of(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None
