"""What the console's routers share: database connections that answer 503 when the database does not,
pages of results, the error body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Generic, TypeVar

import psycopg
from fastapi import Query, Request
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel

from console.actions import ServiceUnavailable

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
