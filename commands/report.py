"""`worktool report`: the after-sales day (docs/rules.md §7) as the dataflow wrote it.

Reads the row of `after_sales_daily_reports` for one local day from DATABASE_URL (the desk's
`daily_report` event, projected by the Postgres sink) and prints it as a table, as JSON (the event's
field names, plus `generated_at`) or as CSV (one line per desk member, after a header line).

Exit codes: 0 printed; 1 no report for that day (the day has not ended in the dataflow's event time yet,
or no dataflow ran over it); 2 bad usage: a malformed date, DATABASE_URL unset or unreachable, the
table missing (migrations not applied), an unreadable business configuration.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worktool.events import DailyReport, StaffDay
from worktool.settings import Settings

COLUMNS = (*DailyReport.model_fields, "generated_at")
STAFF_COLUMNS = tuple(StaffDay.model_fields)  # name, assigned, completed, open_at_end, reminders, ...
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class UsageError(Exception):
    """Exit code 2, with this message."""


def parse_date(value: str) -> date:
    """A `YYYY-MM-DD` day (nothing else: no week dates, no times)."""
    if not _DATE.fullmatch(value.strip()):
        raise UsageError(f"--date {value!r}: expected a day as YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip())
    except ValueError as e:
        raise UsageError(f"--date {value!r}: {e}") from None


def yesterday(settings: Settings, now: datetime | None = None) -> date:
    """The day before today in the business configuration's time zone (WORKTOOL_CONFIG)."""
    from worktool.config import ConfigError, load_config

    try:
        timezone = load_config(settings.config_path).timezone
        zone = ZoneInfo(timezone)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"timezone {timezone!r} of the business configuration is not a known time zone"
        ) from None
    return (now or datetime.now(zone)).astimezone(zone).date() - timedelta(days=1)


def fetch_report(database_url: str, day: date) -> dict[str, Any] | None:
    """The day's row with the event's field names and JSON values (report_date as YYYY-MM-DD,
    generated_at as ISO-8601), or None."""
    import psycopg
    from psycopg.rows import dict_row

    try:
        with psycopg.connect(database_url, connect_timeout=10, row_factory=dict_row) as conn:
            row = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM after_sales_daily_reports WHERE report_date = %s", [day]
            ).fetchone()
    except psycopg.errors.UndefinedTable:
        raise UsageError(
            "after_sales_daily_reports does not exist: apply the migrations (worktool migrate up)"
        ) from None
    except psycopg.OperationalError as e:
        raise UsageError(f"cannot read the database (DATABASE_URL): {str(e).strip()}") from None
    if row is None:
        return None
    return {
        **row,
        "report_date": row["report_date"].isoformat(),
        "generated_at": row["generated_at"].isoformat(),
    }


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2)


def as_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STAFF_COLUMNS)
    for member in report["staff"]:
        writer.writerow([member.get(c, "" if c == "name" else 0) for c in STAFF_COLUMNS])
    return out.getvalue()


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _minutes(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} min"


def print_table(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    head = Table(title=f"After-sales day {report['report_date']} ({report['timezone']})", show_header=False)
    head.add_column("figure")
    head.add_column("value", justify="right")
    rows = [
        ("tasks opened", str(report["tasks_opened"])),
        ("tasks completed (whenever opened)", str(report["tasks_completed"])),
        ("tasks cancelled", str(report["tasks_cancelled"])),
        ("opened and completed by 24:00", str(report["opened_and_completed"])),
        ("completion rate", _share(report["completion_rate"])),
        ("average handling", _minutes(report["avg_handling_minutes"])),
        ("p90 handling", _minutes(report["p90_handling_minutes"])),
        ("SLA attained", _share(report["sla_attained"])),
        ("open at 24:00", str(report["open_at_end"])),
        ("overdue at 24:00", str(report["overdue_at_end"])),
        *((f"owners {k}", str(v)) for k, v in report["cooperation"].items()),
    ]
    for figure, value in rows:
        head.add_row(figure, value)
    console.print(head)

    staff = Table(title="Desk members")
    for column in STAFF_COLUMNS:
        staff.add_column(column, justify="left" if column == "name" else "right")
    for member in report["staff"]:
        staff.add_row(*(str(member.get(c, 0)) for c in STAFF_COLUMNS))
    console.print(staff if report["staff"] else "Desk members: none")

    alerts = Table(title="Alerts raised")
    for column in ("alert_type", "level", "raised", "escalated"):
        alerts.add_column(column, justify="left" if column == "alert_type" else "right")
    for a in sorted(report["alerts"], key=lambda a: (a["alert_type"], a["level"])):
        alerts.add_row(a["alert_type"], str(a["level"]), str(a["raised"]), str(a.get("escalated", 0)))
    console.print(alerts if report["alerts"] else "Alerts raised: none")

    funnel = Table(title="Funnel")
    for stage in report["funnel"]:
        funnel.add_column(stage, justify="right")
    funnel.add_row(*(str(n) for n in report["funnel"].values()))
    console.print(funnel)


def cli_report(report_date: str | None, fmt: str = "table", settings: Settings | None = None) -> int:
    """Print the day's report in `fmt` (table, json or csv); the exit code (module doc)."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    settings = settings or Settings()
    try:
        day = parse_date(report_date) if report_date is not None else None
        if missing := settings.missing("database_url"):
            raise UsageError(f"{missing[0]} not set: point it at the stack's database")
        day = day or yesterday(settings)
        assert settings.database_url
        report = fetch_report(settings.database_url, day)
    except UsageError as e:
        err.print(f"[red]{e}[/red]")
        return 2
    if report is None:
        err.print(
            f"no daily report for {day.isoformat()}: the day has not ended in the dataflow's event time "
            "yet, or no dataflow ran"
        )
        return 1
    if ReportFormat(fmt) == ReportFormat.json:
        print(as_json(report))
    elif ReportFormat(fmt) == ReportFormat.csv:
        print(as_csv(report), end="")
    else:
        print_table(report, Console(highlight=False))
    return 0
