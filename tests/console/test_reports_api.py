"""`GET /api/reports/daily` (console/reports.py) against the embedded PostgreSQL, with reports written by
the real projection: the row of a day with the event's field names, the latest without a date, 404 when
there is none, 422 for a malformed date, and every role may read it."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.console.console_client import ROLES, TOKEN, bearer, console, login
from tests.report_rows import end_of_day, insert_report, report_data, report_event
from worktool.settings import Settings

pytestmark = pytest.mark.integration

PATH = "/api/reports/daily"


def test_the_report_of_a_day_is_its_row(settings: Settings, users: dict[str, str]) -> None:
    assert settings.database_url
    insert_report(
        settings.database_url, report_event("2026-03-01"), report_event("2026-03-02", tasks_opened=8)
    )
    with console(settings) as client:
        headers = login(client, users["staff"])
        r = client.get(PATH, params={"date": "2026-03-01"}, headers=headers)
        latest = client.get(PATH, headers=headers)

    assert r.status_code == 200, r.text
    body = r.json()
    assert datetime.fromisoformat(body.pop("generated_at")) == end_of_day("2026-03-01")
    assert body == report_data("2026-03-01")
    assert latest.status_code == 200 and latest.json()["report_date"] == "2026-03-02"
    assert latest.json()["tasks_opened"] == 8


def test_no_report_is_404_with_the_reason(settings: Settings, users: dict[str, str]) -> None:
    assert settings.database_url
    with console(settings) as client:
        headers = login(client, users["inspector"])
        none_yet = client.get(PATH, headers=headers)
        insert_report(settings.database_url, report_event("2026-03-01"))
        missing = client.get(PATH, params={"date": "2026-03-05"}, headers=headers)

    assert none_yet.status_code == 404
    assert none_yet.json()["detail"].startswith("no daily report yet")
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": "no daily report for 2026-03-05: the day has not ended in the dataflow's event time yet, "
        "or no dataflow ran"
    }


@pytest.mark.parametrize(
    "bad",
    ["2026-02-30", "2026-13-01", "20260301", "01.03.2026", "2026-03-01T00:00", "latest", "", "2026-3-1"],
)
def test_a_malformed_date_is_422(settings: Settings, bad: str) -> None:
    with console(settings) as client:
        r = client.get(PATH, params={"date": bad}, headers=bearer(TOKEN))
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["query", "date"]


def test_every_role_and_the_service_token_may_read_it_and_nobody_else(
    settings: Settings, users: dict[str, str]
) -> None:
    assert settings.database_url
    insert_report(settings.database_url, report_event("2026-03-01"))
    with console(settings) as client:
        answers = {role: client.get(PATH, headers=login(client, users[role])).status_code for role in ROLES}
        answers["service"] = client.get(PATH, headers=bearer(TOKEN)).status_code
        anonymous = client.get(PATH).status_code
        forged = client.get(PATH, headers=bearer("not-the-token")).status_code
    assert answers == dict.fromkeys([*ROLES, "service"], 200)
    assert (anonymous, forged) == (401, 401)


def test_the_openapi_document_describes_it(settings: Settings) -> None:
    from console.app import create_app

    operation = create_app(settings).openapi()["paths"][PATH]["get"]
    [param] = [p for p in operation["parameters"] if p["in"] == "query"]
    assert param["name"] == "date" and not param.get("required", False)
    assert {"200", "401", "403", "404", "422", "503"} <= set(operation["responses"])
