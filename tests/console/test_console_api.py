"""The console API against the real (embedded) broker and PostgreSQL: accepted actions land on the
control topic with every field, refusals (404, 409, 422, 401/403) write nothing, and a broker or database
that does not answer is a 503."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from console.app import create_app
from infra.embedded import free_port
from tests.console.alert_rows import RAISED_AT, alert_columns, insert_alert
from tests.support import consume_all
from worktool.models import ControlRecord
from worktool.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = "console-test-token-7f3a9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"reason": "客户已电话确认解决", "actor": "运营-小王"}


@pytest.fixture
def settings(kafka_bootstrap: str, migrated_database_url: str, unique_topics: Callable[..., Any]) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=migrated_database_url,
        api_token=TOKEN,
        **unique_topics(),
    )


def call(
    settings: Settings,
    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]],
    client_host: str = "127.0.0.1",
) -> list[httpx.Response]:
    """Run the requests (method, path, json, headers) in order against the app with its real lifespan."""

    async def main() -> list[httpx.Response]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://console", timeout=30
            ) as client:
                return [
                    await client.request(method, path, json=body, headers=headers)
                    for method, path, body, headers in requests
                ]

    return asyncio.run(main())


def post(settings: Settings, path: str, body: dict[str, Any] | None = BODY, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", AUTH)
    return call(settings, [("POST", path, body, headers)], **kw)[0]


def control_records(settings: Settings) -> list[dict[str, Any]]:
    assert settings.kafka_bootstrap_servers
    return consume_all(settings.kafka_bootstrap_servers, settings.topic_control, idle_s=0.5)


# ---------------------------------------------------------------------------------------------


def test_cancel_is_accepted_once_the_control_record_is_on_the_topic(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url, level=2, status="escalated")
    before = datetime.now(UTC)
    response = post(settings, f"/api/alerts/{alert_id}/cancel")
    after = datetime.now(UTC)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["alert_id"] == alert_id
    [record] = control_records(settings)
    assert record["key"] == b"group:\xe8\xa7\x86\xe9\xa2\x91\xe5\x8f\xb7\xe8\xbf\x90\xe8\x90\xa5A\xe7\xbe\xa4"
    value = record["value"]
    assert set(value) == set(ControlRecord.model_fields)
    assert value["action"] == "cancel_alert"
    assert value["actor"] == BODY["actor"] and value["reason"] == BODY["reason"]
    assert value["request_id"] == answer["request_id"]
    assert value["alert_id"] == alert_id
    assert value["session_id"] == "group:视频号运营A群" and value["robot_id"] == "robot-day"
    assert value["at"].endswith("Z")
    at = ControlRecord.model_validate(value).at
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= at <= after
    # The API writes nothing to the database: the dataflow applies the action.
    assert alert_columns(settings.database_url, alert_id)["status"] == "escalated"


def test_escalating_a_robot_alert_is_keyed_by_its_robot(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(
        settings.database_url, alert_type="robot_fault", session_id=None, robot_id="robot-9"
    )
    first = post(settings, f"/api/alerts/{alert_id}/escalate")
    second = post(settings, f"/api/alerts/{alert_id}/escalate", {"reason": "again", "actor": "值班"})

    assert first.status_code == second.status_code == 202
    records = control_records(settings)
    assert [r["key"] for r in records] == [b"robot:robot-9", b"robot:robot-9"]
    values = [r["value"] for r in records]
    assert {v["action"] for v in values} == {"escalate_alert"}
    assert {v["session_id"] for v in values} == {None} and {v["robot_id"] for v in values} == {"robot-9"}
    # A fresh request id for every request: the dataflow applies each exactly once.
    assert sorted(v["request_id"] for v in values) == sorted(
        [first.json()["request_id"], second.json()["request_id"]]
    )
    assert first.json()["request_id"] != second.json()["request_id"]


def test_refusals_are_clear_and_write_nothing(settings: Settings) -> None:
    assert settings.database_url
    url = settings.database_url
    cancelled = insert_alert(url, status="cancelled")
    resolved = insert_alert(url, status="resolved", level=3)
    at_ceiling = insert_alert(url, status="escalated", level=4)
    missing = "alert-does-not-exist"

    responses = call(
        settings,
        [("POST", f"/api/alerts/{missing}/cancel", BODY, AUTH),
         ("POST", f"/api/alerts/{missing}/escalate", BODY, AUTH),
         ("GET", f"/api/alerts/{missing}", None, AUTH),
         ("POST", f"/api/alerts/{cancelled}/cancel", BODY, AUTH),
         ("POST", f"/api/alerts/{cancelled}/escalate", BODY, AUTH),
         ("POST", f"/api/alerts/{resolved}/cancel", BODY, AUTH),
         ("POST", f"/api/alerts/{resolved}/escalate", BODY, AUTH),
         ("POST", f"/api/alerts/{at_ceiling}/escalate", BODY, AUTH)],
    )  # fmt: skip

    assert [r.status_code for r in responses] == [404, 404, 404, 409, 409, 409, 409, 409]
    details = [r.json()["detail"] for r in responses]
    assert details[0] == f"alert {missing} does not exist"
    assert details[3] == f"alert {cancelled} is already cancelled"
    assert details[6] == f"alert {resolved} is already resolved"
    assert "level 4 is the ceiling" in details[7]
    assert control_records(settings) == []


def test_a_level_4_alert_can_still_be_cancelled(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url, status="escalated", level=4)
    assert post(settings, f"/api/alerts/{alert_id}/cancel").status_code == 202
    assert [r["value"]["action"] for r in control_records(settings)] == ["cancel_alert"]


@pytest.mark.parametrize(
    "body",
    [
        {"actor": "运营-小王"},
        {"reason": "重复告警"},
        {"reason": "   ", "actor": "运营-小王"},
        {"reason": "重复告警", "actor": ""},
        {"reason": "x" * 2001, "actor": "运营-小王"},
        {"reason": "重复告警", "actor": "x" * 129},
        {"reason": "重复告警", "actor": "运营-小王", "level": 4},
        None,
    ],
    ids=[
        "no-reason",
        "no-actor",
        "blank-reason",
        "empty-actor",
        "long-reason",
        "long-actor",
        "extra",
        "no-body",
    ],
)
def test_a_bad_body_is_422(settings: Settings, body: dict[str, Any] | None) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url)
    response = post(settings, f"/api/alerts/{alert_id}/cancel", body)
    assert response.status_code == 422, response.text


def test_a_token_is_required_when_one_is_configured(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url, level=2)
    path = f"/api/alerts/{alert_id}/escalate"
    responses = call(
        settings,
        [("POST", path, BODY, {}),
         ("POST", path, BODY, {"Authorization": "Bearer wrong-token"}),
         ("POST", path, BODY, {"Authorization": f"Basic {TOKEN}"}),
         ("GET", f"/api/alerts/{alert_id}", None, {}),
         ("GET", "/healthz", None, {}),
         ("GET", f"/api/alerts/{alert_id}", None, AUTH)],
    )  # fmt: skip

    assert [r.status_code for r in responses] == [401, 401, 401, 401, 200, 200]
    assert responses[0].headers["www-authenticate"] == "Bearer"
    assert TOKEN not in responses[1].text
    assert control_records(settings) == []


def test_without_a_token_only_loopback_clients_are_answered(settings: Settings) -> None:
    assert settings.database_url
    open_settings = settings.model_copy(update={"api_token": None})
    alert_id = insert_alert(settings.database_url)
    remote = post(open_settings, f"/api/alerts/{alert_id}/cancel", headers={}, client_host="203.0.113.7")
    local = post(open_settings, f"/api/alerts/{alert_id}/cancel", headers={}, client_host="::1")

    assert remote.status_code == 403
    assert local.status_code == 202
    assert len(control_records(settings)) == 1


def test_get_returns_the_alert_row(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url, status="escalated", level=2)
    [response] = call(settings, [("GET", f"/api/alerts/{alert_id}", None, AUTH)])

    assert response.status_code == 200
    alert = response.json()
    assert alert["alert_id"] == alert_id
    assert alert["alert_type"] == "staff_no_reply" and alert["alert_level"] == 2
    assert alert["status"] == "escalated" and alert["escalation_count"] == 1
    assert alert["escalation_history"] == [
        {"at": "2026-03-02T09:40:00.000Z", "from_level": 1, "to_level": 2, "by": "rules"}
    ]
    assert (
        alert["raised_at"]
        == "2026-03-02T09:30:00.000Z"
        == RAISED_AT.isoformat(timespec="milliseconds")[:-6] + "Z"
    )
    assert alert["cancel_reason"] is None and alert["cancelled_at"] is None


def test_the_openapi_document_describes_the_actions(settings: Settings) -> None:
    [docs, spec] = call(settings, [("GET", "/docs", None, {}), ("GET", "/openapi.json", None, {})])
    assert docs.status_code == 200
    paths = spec.json()["paths"]
    assert {
        "/api/alerts/{alert_id}/cancel",
        "/api/alerts/{alert_id}/escalate",
        "/api/alerts/{alert_id}",
    } <= set(paths)
    assert {"202", "401", "404", "409", "422", "503"} <= set(
        paths["/api/alerts/{alert_id}/escalate"]["post"]["responses"]
    )


def test_a_broker_that_does_not_answer_is_503(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url)
    silent = settings.model_copy(
        update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}", "api_produce_timeout_s": 1.0}
    )
    started = time.monotonic()
    response = post(silent, f"/api/alerts/{alert_id}/cancel")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert "did not acknowledge" in response.json()["detail"]
    assert elapsed < 5
    assert control_records(settings) == []


def test_a_database_that_does_not_answer_is_503(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={"database_url": f"postgresql://worktool@127.0.0.1:{free_port()}/worktool?connect_timeout=1"}
    )
    response = post(unreachable, "/api/alerts/alert-1/cancel")
    assert response.status_code == 503
    assert "cannot read alert_history" in response.json()["detail"]
