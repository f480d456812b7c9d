"""`worktool report` against a fresh migrated PostgreSQL holding reports written by the real projection:
the table, JSON and CSV of a day, yesterday in the configured time zone by default, and exit codes 1 (no
report for the day) and 2 (bad date, no database)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from commands.cli import app
from infra.embedded import free_port
from tests.report_rows import end_of_day, insert_report, report_data, report_event

pytestmark = pytest.mark.integration

DAY = "2026-03-01"


@pytest.fixture
def report_db(new_database: Callable[..., str]) -> str:
    url = new_database(migrated=True)
    insert_report(url, report_event(DAY), report_event("2026-03-02", tasks_opened=0, completion_rate=None))
    return url


def run(database_url: str | None, *args: str, **env: str) -> Result:
    environment = {"DATABASE_URL": database_url or "", "COLUMNS": "120", **env}
    return CliRunner().invoke(app, ["report", *args], env=environment)


def said(text: str) -> str:
    return " ".join(text.split())


def test_table_shows_the_headline_staff_alerts_and_funnel(report_db: str) -> None:
    result = run(report_db, "--date", DAY)
    assert result.exit_code == 0, result.output
    text = said(result.stdout)
    assert f"After-sales day {DAY} (Asia/Shanghai)" in text
    for figure in (
        "tasks opened │ 5",
        "completion rate │ 60.0%",
        "average handling │ 42.5 min",
        "p90 handling │ 95.0 min",
        "SLA attained │ 75.0%",
        "overdue at 24:00 │ 1",
        "owners refused │ 1",
    ):
        assert figure in text, figure
    assert "售后-小李 │ 3 │ 3 │ 0 │ 1 │ 0 │ 0" in text
    assert "售后-小张 │ 2 │ 1 │ 1 │ 0 │ 1 │ 1" in text
    assert "staff_no_reply │ 1 │ 4 │ 1" in text and "task_unfinished │ 2 │ 1 │ 0" in text
    assert "needs ┃ opened ┃ assigned ┃ completed" in text and "7 │ 5 │ 5 │ 3" in text


def test_a_day_without_tasks_shows_dashes_not_zero_rates(report_db: str) -> None:
    result = run(report_db, "--date", "2026-03-02")
    assert result.exit_code == 0, result.output
    assert "completion rate │ —" in said(result.stdout)


def test_json_is_the_row_with_the_events_field_names(report_db: str) -> None:
    result = run(report_db, "--date", DAY, "--format", "json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert datetime.fromisoformat(row.pop("generated_at")) == end_of_day(DAY)
    assert row == report_data(DAY)


def test_csv_is_a_header_and_one_line_per_desk_member(report_db: str) -> None:
    result = run(report_db, "-d", DAY, "-f", "CSV")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "name,assigned,completed,open_at_end,reminders,not_followed_up,unfinished",
        "售后-小李,3,3,0,1,0,0",
        "售后-小张,2,1,1,0,1,1",
    ]
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["name"] for r in rows] == ["售后-小李", "售后-小张"]


@pytest.mark.parametrize("timezone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])  # UTC+14, UTC-11
def test_the_default_day_is_yesterday_in_the_configured_time_zone(
    timezone: str, new_database: Callable[..., str], tmp_path: Path
) -> None:
    url = new_database(migrated=True)
    yesterday = (datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)).isoformat()
    insert_report(url, report_event(yesterday, timezone=timezone))
    config = tmp_path / "business.yaml"
    config.write_text(f"timezone: {timezone}\n", encoding="utf-8")

    result = run(url, "--format", "json", WORKTOOL_CONFIG=str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report_date"] == yesterday


def test_no_report_for_the_day_is_exit_1_with_the_reason(report_db: str) -> None:
    result = run(report_db, "--date", "2026-03-05")
    assert result.exit_code == 1
    assert said(result.stderr) == (
        "no daily report for 2026-03-05: the day has not ended in the dataflow's event time yet, "
        "or no dataflow ran"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("bad", ["2026-02-30", "01.03.2026", "20260301", "2026-03-01T00:00", "yesterday"])
def test_a_bad_date_is_exit_2(report_db: str, bad: str) -> None:
    result = run(report_db, "--date", bad)
    assert result.exit_code == 2
    assert "--date" in result.stderr and result.stdout == ""


def test_no_database_is_exit_2(new_database: Callable[..., str]) -> None:
    unset = run(None, "--date", DAY)
    assert unset.exit_code == 2 and "DATABASE_URL not set" in said(unset.stderr)

    refused = run(f"postgresql://worktool@127.0.0.1:{free_port()}/worktool", "--date", DAY)
    assert refused.exit_code == 2 and "cannot read the database" in said(refused.stderr)

    unmigrated = run(new_database(migrated=False), "--date", DAY)
    assert unmigrated.exit_code == 2 and "worktool migrate up" in said(unmigrated.stderr)


def test_an_unreadable_configuration_is_exit_2(report_db: str, tmp_path: Path) -> None:
    config = tmp_path / "business.yaml"
    config.write_text("timezone: Mars/Olympus_Mons\n", encoding="utf-8")
    result = run(report_db, WORKTOOL_CONFIG=str(config))
    assert result.exit_code == 2 and "Mars/Olympus_Mons" in result.stderr
