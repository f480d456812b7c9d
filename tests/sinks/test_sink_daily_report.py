"""The daily_report projection against a real, migrated database: one after_sales_daily_reports row per
local day with every column set, generated_at the event time, and replays that write the same row again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from infra.migrate import apply_down, apply_up, load_migrations
from sinks.postgres import plan, write_events
from tests.report_rows import end_of_day, report_data, report_event
from worktool.events import CommandCreated, DailyReport

pytestmark = pytest.mark.integration

COLUMNS = [*DailyReport.model_fields, "generated_at"]


@pytest.fixture
def conn(new_database: Callable[..., str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(new_database(migrated=True), autocommit=True, row_factory=dict_row) as c:
        yield c


def reports(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM after_sales_daily_reports ORDER BY report_date").fetchall()


def versions(conn: psycopg.Connection) -> list[tuple[date, str]]:
    """Each row's physical version: a rewritten row gets a new xmin."""
    rows = conn.execute("SELECT report_date, xmin::text AS v FROM after_sales_daily_reports ORDER BY 1")
    return [(r["report_date"], r["v"]) for r in rows.fetchall()]


def test_a_daily_report_is_one_row_with_every_column(conn: psycopg.Connection) -> None:
    assert write_events(conn, [report_event("2026-03-01")]) == {"daily_reports": 1}

    [row] = reports(conn)
    assert list(row) == COLUMNS  # the table is the event plus generated_at, in the event's order
    data = report_data("2026-03-01")
    assert row == {
        **data,
        "report_date": date(2026, 3, 1),
        "generated_at": datetime(2026, 3, 1, 16, 0, tzinfo=UTC),  # 24:00 in Asia/Shanghai
    }
    assert row["generated_at"] == end_of_day("2026-03-01")
    assert all(value is not None for value in row.values())


def test_a_day_without_tasks_keeps_its_rates_null(conn: psycopg.Connection) -> None:
    empty = dict.fromkeys(("completion_rate", "avg_handling_minutes", "p90_handling_minutes", "sla_attained"))
    write_events(conn, [report_event("2026-03-02", tasks_opened=0, staff=[], alerts=[], **empty)])
    [row] = reports(conn)
    assert {k: row[k] for k in empty} == empty
    assert (row["tasks_opened"], row["staff"], row["alerts"]) == (0, [], [])


def test_a_replay_writes_the_same_row_again(conn: psycopg.Connection) -> None:
    events = [report_event("2026-03-01"), report_event("2026-03-02", tasks_opened=9)]
    write_events(conn, events)
    first, stored = reports(conn), versions(conn)

    write_events(conn, events)  # a restart re-emits the batch
    write_events(conn, events[::-1] * 2, copy=False)  # the event-by-event path, repeated, reordered

    assert reports(conn) == first
    assert versions(conn) == stored  # identical rows are not even rewritten


def test_a_later_report_of_the_same_day_replaces_the_row(conn: psycopg.Connection) -> None:
    write_events(conn, [report_event("2026-03-01")])
    corrected = report_event("2026-03-01", tasks_completed=5, staff=[], summary="更正后的日报")
    write_events(conn, [corrected])
    [row] = reports(conn)
    assert (row["tasks_completed"], row["staff"], row["summary"]) == (5, [], "更正后的日报")

    # Two reports of one day in one batch: the later one in the batch wins, as the database would do.
    write_events(conn, [report_event("2026-03-01"), corrected])
    [row] = reports(conn)
    assert row["summary"] == "更正后的日报"


def test_the_hot_path_event_projects_like_the_validated_one() -> None:
    data = report_data("2026-03-01")
    unchecked = DailyReport.make(**data).at(end_of_day("2026-03-01"), "desk")  # nested plain dicts
    checked = report_event("2026-03-01")  # nested StaffDay / AlertCount models
    [(stmt, a)] = plan([unchecked]).items()
    [(_, b)] = plan([checked]).items()
    assert stmt.table == "after_sales_daily_reports"
    assert [{k: getattr(v, "obj", v) for k, v in row.items()} for row in a] == [
        {k: getattr(v, "obj", v) for k, v in row.items()} for row in b
    ]


def test_a_malformed_report_date_is_set_aside_not_the_batch(conn: psycopg.Connection) -> None:
    bad = DailyReport.make(**report_data("2026-02-30")).at(end_of_day("2026-03-01"), "desk")
    rejected: list = []
    write_events(conn, [bad, report_event("2026-03-01")], rejected)
    assert [r.item for r in rejected] == [bad] and "2026-02-30" in rejected[0].reason
    assert [r["report_date"] for r in reports(conn)] == [date(2026, 3, 1)]


def test_the_reports_feishu_command_is_a_robot_commands_row(new_database: Callable[..., str]) -> None:
    """Migration 0009 lets robot_commands hold channel `feishu`; rolling it back removes such rows."""
    url = new_database(migrated=True)
    at = end_of_day("2026-03-01")
    created = CommandCreated.model_validate({
        "command_id": "cmd_feishu_report", "channel": "feishu", "robot_id": None, "target": "feishu",
        "content": report_data()["summary"], "at_list": [], "due_time": at, "cause_event": "daily_report",
        "cause_id": "2026-03-01",
    }).at(at, "desk")  # fmt: skip
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as c:
        write_events(c, [created])
        [row] = c.execute("SELECT channel, robot_id, target, cause_event FROM robot_commands").fetchall()
    assert row == {"channel": "feishu", "robot_id": None, "target": "feishu", "cause_event": "daily_report"}

    apply_down(url, len(load_migrations()) - 8)  # down to 0008: 0009 and the later ones rolled back
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM robot_commands").fetchone() == (0,)
        with pytest.raises(psycopg.errors.CheckViolation):  # (the sink's later columns are gone too)
            c.execute(
                "INSERT INTO robot_commands (command_id, robot_id, command_type, channel) "
                "VALUES ('cmd_feishu_report', 'r', 203, 'feishu')"
            )
    apply_up(url)
    with psycopg.connect(url, autocommit=True) as c:
        write_events(c, [created])
        assert c.execute("SELECT channel FROM robot_commands").fetchone() == ("feishu",)
