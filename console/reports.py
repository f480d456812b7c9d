"""The after-sales daily report in the console (docs/rules.md §7): `GET /api/reports/daily?date=YYYY-MM-DD`.

The row of after_sales_daily_reports for that local day, as the dataflow wrote it from the desk's
`daily_report` event at 24:00 event time (the event's field names, plus `generated_at`); without `date`,
the latest report. 404 when there is none, 422 for a malformed date. Permission `read`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from psycopg.rows import dict_row
from pydantic import AfterValidator, BaseModel

from console.actions import ActionError
from console.auth import AUTH_ERRORS, Principal, require
from console.common import Problem, connection, pool_of
from console.permissions import Permission
from worktool.events import AlertCount, StaffDay
from worktool.models import UtcDatetime

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class ReportNotFound(ActionError):
    status = 404


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    if not _DAY.fullmatch(value):
        raise ValueError("expected a day as YYYY-MM-DD")
    return date.fromisoformat(value)  # a day that does not exist (2026-02-30) raises ValueError


ReportDate = Annotated[
    str | None,
    Query(
        alias="date",
        max_length=10,
        description="The local day (after_sales time zone), YYYY-MM-DD; default: the latest report.",
        examples=["2026-03-01"],
    ),
    AfterValidator(_day),
]


class DailyReportRow(BaseModel):
    """One local day of the after-sales desk (docs/events.md `daily_report`)."""

    report_date: date
    timezone: str
    tasks_opened: int
    tasks_completed: int
    tasks_cancelled: int
    opened_and_completed: int
    completion_rate: float | None
    avg_handling_minutes: float | None
    p90_handling_minutes: float | None
    sla_attained: float | None
    open_at_end: int
    overdue_at_end: int
    cooperation: dict[str, int]
    staff: list[StaffDay]
    alerts: list[AlertCount]
    funnel: dict[str, int]
    summary: str
    generated_at: UtcDatetime  # event time: 24:00 of the day


COLUMNS = ", ".join(DailyReportRow.model_fields)

reports_router = APIRouter(prefix="/api/reports", tags=["reports"], responses=AUTH_ERRORS)


@reports_router.get(
    "/daily", responses={404: {"model": Problem, "description": "No report for that day (or none yet)."}}
)
async def get_daily_report(
    _: Annotated[Principal, require(Permission.READ)],
    request: Request,
    day: ReportDate = None,
) -> DailyReportRow:
    """The after-sales daily report of one local day (default: the latest): tasks opened, completed and
    cancelled, completion rate, handling times, SLA attainment, open and overdue tasks at 24:00, owners'
    cooperation, each desk member's day, alerts by type and level, the funnel, the WeCom summary."""
    what: date | None = day  # type: ignore[assignment]  (the validator made it a date)
    if what is None:
        sql, params = f"SELECT {COLUMNS} FROM after_sales_daily_reports ORDER BY report_date DESC LIMIT 1", []
    else:
        sql, params = f"SELECT {COLUMNS} FROM after_sales_daily_reports WHERE report_date = %s", [what]
    pool = pool_of(request)
    async with (
        connection(pool, "cannot read after_sales_daily_reports") as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(sql, params)
        row: dict[str, Any] | None = await cur.fetchone()
    if row is None:
        if what is None:
            raise ReportNotFound(
                "no daily report yet: no day has ended in the dataflow's event time, or no dataflow ran"
            )
        raise ReportNotFound(
            f"no daily report for {what.isoformat()}: the day has not ended in the dataflow's event time yet, "
            "or no dataflow ran"
        )
    return DailyReportRow.model_validate(row)


REPORT_ROUTERS = (reports_router,)
__all__ = ["REPORT_ROUTERS", "DailyReportRow"]
