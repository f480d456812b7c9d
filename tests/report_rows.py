"""Daily reports for the tests (docs/rules.md §7): a `daily_report` event as the desk emits it, and its
row in after_sales_daily_reports written through the real projection (sinks/postgres.py)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from sinks.postgres import write_events
from worktool.events import DailyReport, MonitorEvent

TIMEZONE = "Asia/Shanghai"
SUMMARY = "【售后日报 {day}】新开工单 5，完成 4（当日新开完成 3，完成率 60%），超时未完成 1。"


def end_of_day(report_date: str, timezone: str = TIMEZONE) -> datetime:
    """24:00 of the local day: the event time of its report."""
    day = date.fromisoformat(report_date) + timedelta(days=1)
    return datetime.combine(day, time(), tzinfo=ZoneInfo(timezone))


def report_data(report_date: str = "2026-03-01", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "report_date": report_date,
        "timezone": TIMEZONE,
        "tasks_opened": 5,
        "tasks_completed": 4,
        "tasks_cancelled": 1,
        "opened_and_completed": 3,
        "completion_rate": 0.6,
        "avg_handling_minutes": 42.5,
        "p90_handling_minutes": 95.0,
        "sla_attained": 0.75,
        "open_at_end": 1,
        "overdue_at_end": 1,
        "cooperation": {"responded": 6, "refused": 1, "timeout": 2},
        "staff": [
            {
                "name": "售后-小李",
                "assigned": 3,
                "completed": 3,
                "open_at_end": 0,
                "reminders": 1,
                "not_followed_up": 0,
                "unfinished": 0,
            },
            {
                "name": "售后-小张",
                "assigned": 2,
                "completed": 1,
                "open_at_end": 1,
                "reminders": 0,
                "not_followed_up": 1,
                "unfinished": 1,
            },
        ],  # fmt: skip
        "alerts": [
            {"alert_type": "staff_no_reply", "level": 1, "raised": 4, "escalated": 1},
            {"alert_type": "task_unfinished", "level": 2, "raised": 1, "escalated": 0},
        ],
        "funnel": {"needs": 7, "opened": 5, "assigned": 5, "completed": 3},
        "summary": SUMMARY.format(day=report_date),
    }
    return {**data, **overrides}


def report_event(report_date: str = "2026-03-01", **overrides: Any) -> MonitorEvent:
    """The validated event, at 24:00 of its day (session "desk", no robot)."""
    return DailyReport.event(
        event_time=end_of_day(report_date), session_id="desk", **report_data(report_date, **overrides)
    )


def insert_report(database_url: str, *events: MonitorEvent) -> None:
    """The events' rows, written by the Postgres sink's projection."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        write_events(conn, list(events))
