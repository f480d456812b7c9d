"""What the console's routers share: the validated text types of every request string, database
connections that answer 503 when the database does not, pages of results, the error body."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import psycopg
from fastapi import Query, Request
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, StringConstraints
from pydantic_core import CoreSchema, core_schema
from starlette.convertors import PathConvertor, register_url_convertor

from console.actions import ServiceUnavailable

# ---------------------------------------------------------------------------------------------
# Request text: every string a request brings in (query filter, path id, body field) is one of these
# types, so it is checked in one place. PostgreSQL text and jsonb cannot hold NUL (the insert or the
# query fails), control characters have no business in an id, a filter or a name, and lone surrogates
# cannot be encoded as UTF-8: each is a 422 naming the position, never a 500.

MAX_ID_CHARS = 400  # ids and filter values (a session id is "group:<name>" or "user:<name>")
# C0 controls, DEL, C1 controls, lone surrogates; free text may keep tab, line feed and carriage return.
# The same rule, less the surrogates (which no UTF-8 request can carry), is the `pattern` of each field
# in the OpenAPI document, so clients (and schemathesis) know it.
_LINE = "\x00-\x1f\x7f-\x9f"
_MULTILINE = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"


@dataclass(frozen=True)
class _NoControlCharacters:
    """Annotated metadata: the check after the string constraints, and its pattern in the JSON schema."""

    forbidden: str  # a regex character range
    what: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        found = re.compile(f"[{self.forbidden}\ud800-\udfff]").search

        def check(value: str) -> str:
            if (bad := found(value)) is not None:
                raise ValueError(
                    f"{self.what} at position {bad.start()} (U+{ord(bad.group()):04X}) is not allowed"
                )
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        json_schema = handler(schema)
        ecma = "".join(f"\\u{ord(c):04x}" if c != "-" else c for c in self.forbidden)
        json_schema["pattern"] = f"^[^{ecma}]*$"
        return json_schema


_SINGLE_LINE = _NoControlCharacters(_LINE, "a control character")
_FREE_TEXT = _NoControlCharacters(_MULTILINE, "a control character other than tab or a line break")


def line_text(max_length: int, *, min_length: int = 0, strip: bool = False) -> Any:
    """A single line: no control character at all (tab and newline included), at most max_length."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length),
        _SINGLE_LINE,
    ]


def free_text(max_length: int, *, min_length: int = 0, strip: bool = False) -> Any:
    """Free text typed by a person (a reason): tab and line breaks allowed, other control characters not."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length),
        _FREE_TEXT,
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


M = TypeVar("M", bound=BaseModel)


def where_of(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """SQL conditions for the given filters (column -> value or list of values); None and [] are no
    filter. Column names come from this module, never from the request."""
    conditions, params = [], []
    for column, value in filters.items():
        if value is None or value == []:
            continue
        if isinstance(value, list):
            conditions.append(f"{column} = ANY(%s)")
        else:
            conditions.append(f"{column} = %s")
        params.append(value)
    return " AND ".join(conditions) or "true", params


async def read_page(
    conn: psycopg.AsyncConnection[Any],
    model: type[M],
    *,
    select: str,
    source: str,
    filters: dict[str, Any],
    order_by: str,
    limit: int,
    offset: int,
    extra_where: Sequence[tuple[str, Any]] = (),
) -> Page[M]:
    where, params = where_of(filters)
    for condition, value in extra_where:
        where += f" AND {condition}"
        params.append(value)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT count(*) AS n FROM {source} WHERE {where}", params)
        total = (await cur.fetchone() or {"n": 0})["n"]
        await cur.execute(
            f"SELECT {select} FROM {source} WHERE {where} ORDER BY {order_by} LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        items = [model.model_validate(row) for row in await cur.fetchall()]
    return Page[model](items=items, total=total, limit=limit, offset=offset)  # type: ignore[valid-type]
