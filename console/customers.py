"""Customer profiles in the console (docs/rules.md §7.6): the owners of every conversation as the
dataflow last described them (customer_profiles, written from its throttled customer_updated events).

- `GET /api/customers` (filters: band, session_id, q = part of the name or group; order: health, the
  least healthy first, or recent): a page of profiles.
- `GET /api/customers/{session_id}/{name}`: one profile with its history (the owner's latest messages),
  their tasks and their alerts. 404 when the dataflow has not described that owner. The name is the last
  path segment (a session id may hold "/"; URL-encode both).
Permission `read`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict

from console.actions import ActionError, AlertRow
from console.auth import AUTH_ERRORS
from console.common import (
    DEFAULT_LIMIT,
    FilterText,
    IdText,
    Limit,
    Offset,
    Page,
    Problem,
    connection,
    pool_of,
    read_page,
)
from console.reads import Reader, SessionMessage
from console.tasks import TASK_COLUMNS, TaskRow, business, with_due
from worktool.events import OpenTask
from worktool.models import UtcDatetime, utc_now

HISTORY = 50  # the owner's latest messages on the customer page
LINKED = 100  # their latest tasks and alerts


class CustomerNotFound(ActionError):
    status = 404


class CustomerRow(BaseModel):
    """One owner's profile (docs/events.md `customer_updated`)."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    user_name: str
    group_name: str | None
    first_seen_at: UtcDatetime
    last_message_at: UtcDatetime
    message_count: int
    messages: dict[str, int]
    requirements: dict[str, int]
    open_tasks: list[OpenTask]
    alerts: dict[str, int]
    open_alerts: int
    satisfaction: float | None
    satisfaction_trend: Literal["up", "down", "flat"] | None
    cooperation: dict[str, int]
    cooperation_level: str
    responses: int
    avg_response_minutes: float | None
    waiting_since: UtcDatetime | None
    health_score: int
    health_band: Literal["healthy", "watch", "at_risk"]
    updated_at: UtcDatetime


class CustomerDetail(BaseModel):
    profile: CustomerRow
    history: list[SessionMessage]  # their latest messages, newest first
    tasks: list[TaskRow]  # newest first
    alerts: list[AlertRow]  # newest first


COLUMNS = ", ".join(CustomerRow.model_fields)
_ORDER = {
    "health": "health_score, last_message_at DESC, session_id, user_name",
    "recent": "last_message_at DESC, session_id, user_name",
}
customers_router = APIRouter(prefix="/api/customers", tags=["customers"], responses=AUTH_ERRORS)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@customers_router.get("")
async def list_customers(
    _: Reader,
    request: Request,
    band: Annotated[list[Literal["healthy", "watch", "at_risk"]], Query()] = [],  # noqa: B006
    session_id: FilterText | None = None,
    q: Annotated[FilterText | None, Query(description="Part of the owner's name or group.")] = None,
    order: Literal["health", "recent"] = "health",
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[CustomerRow]:
    """Owners' profiles: the least healthy first (or the most recently active)."""
    extra = [("(user_name || ' ' || coalesce(group_name, '')) ILIKE %s", _like(q))] if q else []
    async with connection(pool_of(request), "cannot read customer_profiles") as conn:
        return await read_page(
            conn,
            CustomerRow,
            select=COLUMNS,
            source="customer_profiles",
            filters={"health_band": band, "session_id": session_id},
            order_by=_ORDER[order],
            limit=limit,
            offset=offset,
            extra_where=extra,
        )


@customers_router.get(
    "/{session_id:text_path}/{name}",
    responses={404: {"model": Problem, "description": "No profile of that owner."}},
)
async def get_customer(
    session_id: Annotated[IdText, Path()],
    name: Annotated[IdText, Path()],
    _: Reader,
    request: Request,
) -> CustomerDetail:
    """One owner: the profile, their latest messages, their tasks and their alerts."""
    async with (
        connection(pool_of(request), "cannot read customer_profiles") as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            f"SELECT {COLUMNS} FROM customer_profiles WHERE session_id = %s AND user_name = %s",
            [session_id, name],
        )
        row = await cur.fetchone()
        if row is None:
            raise CustomerNotFound(f"no profile of {name!r} in {session_id}: the dataflow has not seen them")
        await cur.execute(
            f"SELECT {', '.join(SessionMessage.model_fields)} FROM session_messages "
            "WHERE session_id = %s AND sender_name = %s ORDER BY received_at DESC, message_id LIMIT %s",
            [session_id, name, HISTORY],
        )
        history = [SessionMessage.model_validate(r) for r in await cur.fetchall()]
        await cur.execute(
            f"SELECT {', '.join(TASK_COLUMNS)} FROM after_sales_tasks WHERE session_id = %s AND user_name = %s "
            "ORDER BY opened_at DESC NULLS LAST, task_id LIMIT %s",
            [session_id, name, LINKED],
        )
        config, now = business(request), utc_now()
        tasks = [with_due(r, config, now) for r in await cur.fetchall()]
        await cur.execute(
            f"SELECT {', '.join(AlertRow.model_fields)} FROM alert_history WHERE session_id = %s "
            "AND user_name = %s ORDER BY raised_at DESC, alert_id LIMIT %s",
            [session_id, name, LINKED],
        )
        alerts = [AlertRow.model_validate(r) for r in await cur.fetchall()]
    return CustomerDetail(
        profile=CustomerRow.model_validate(row), history=history, tasks=tasks, alerts=alerts
    )


CUSTOMER_ROUTERS = (customers_router,)
__all__ = ["CUSTOMER_ROUTERS", "CustomerDetail", "CustomerRow"]
