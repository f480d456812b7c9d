"""`worktool alerts cancel|escalate` against the real (embedded) broker and PostgreSQL, without the API:
the same checks and the same control record, with exit codes 0 / 1 (refused or unavailable) / 2 (usage)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from commands.cli import app
from infra.embedded import free_port
from tests.console.alert_rows import alert_columns, insert_alert
from tests.support import consume_all
from worktool.models import ControlRecord
from worktool.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(kafka_bootstrap: str, migrated_database_url: str, unique_topics: Callable[..., Any]) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap, database_url=migrated_database_url, **unique_topics()
    )


def run(settings: Settings, *args: str, **env: str) -> Result:
    environment = {
        "DATABASE_URL": settings.database_url or "",
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "WORKTOOL_TOPIC_CONTROL": settings.topic_control,
        "WORKTOOL_API_PRODUCE_TIMEOUT_S": "1",
        **env,
    }
    return CliRunner().invoke(app, ["alerts", *args], env=environment)


def said(result: Result) -> str:
    """Everything the command printed, on one line (rich wraps at the terminal width)."""
    return " ".join(result.output.split())


def control_records(settings: Settings) -> list[dict[str, Any]]:
    assert settings.kafka_bootstrap_servers
    return consume_all(settings.kafka_bootstrap_servers, settings.topic_control, idle_s=0.5)


# ---------------------------------------------------------------------------------------------


def test_cancel_writes_the_control_record_and_says_so(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url, level=2, status="escalated")
    result = run(settings, "cancel", alert_id, "--reason", "已电话回访", "--actor", "运营-小王")

    assert result.exit_code == 0, result.output
    [record] = control_records(settings)
    value = ControlRecord.model_validate(record["value"])
    assert record["key"] == "group:视频号运营A群".encode()
    assert value.action == "cancel_alert" and value.alert_id == alert_id
    assert value.actor == "运营-小王" and value.reason == "已电话回访"
    assert value.session_id == "group:视频号运营A群" and value.robot_id == "robot-day"
    text = said(result)
    assert f"cancel_alert of alert {alert_id} (staff_no_reply, level 2, escalated" in text
    assert f"as request {value.request_id}" in text and settings.topic_control in text
    assert alert_columns(settings.database_url, alert_id)["status"] == "escalated"  # the dataflow's job


def test_escalate_a_robot_alert(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(
        settings.database_url, alert_type="robot_fault", session_id=None, robot_id="robot-9"
    )
    result = run(settings, "escalate", alert_id, "--reason", "机器人持续离线", "--actor", "值班")

    assert result.exit_code == 0, result.output
    [record] = control_records(settings)
    assert record["key"] == b"robot:robot-9"
    assert record["value"]["action"] == "escalate_alert" and record["value"]["robot_id"] == "robot-9"
    assert "robot robot-9" in said(result)


def test_unknown_and_closed_alerts_exit_1(settings: Settings) -> None:
    assert settings.database_url
    url = settings.database_url
    cancelled = insert_alert(url, status="cancelled")
    resolved = insert_alert(url, status="resolved")
    at_ceiling = insert_alert(url, status="escalated", level=4)
    reason_actor = ("--reason", "r", "--actor", "a")

    unknown = run(settings, "escalate", "alert-nope", *reason_actor)
    closed = run(settings, "cancel", cancelled, *reason_actor)
    solved = run(settings, "escalate", resolved, *reason_actor)
    ceiling = run(settings, "escalate", at_ceiling, *reason_actor)

    assert [r.exit_code for r in (unknown, closed, solved, ceiling)] == [1, 1, 1, 1]
    assert "refused (404): alert alert-nope does not exist" in said(unknown)
    assert f"refused (409): alert {cancelled} is already cancelled" in said(closed)
    assert f"alert {resolved} is already resolved" in said(solved)
    assert "level 4 is the ceiling" in said(ceiling)
    assert control_records(settings) == []


@pytest.mark.parametrize(
    "args",
    [
        ["cancel", "alert-1", "--reason", "r"],
        ["cancel", "alert-1", "--actor", "a"],
        ["escalate", "--reason", "r", "--actor", "a"],
        ["cancel", "alert-1", "--reason", "  ", "--actor", "a"],
        ["cancel", "alert-1", "--reason", "r", "--actor", "x" * 129],
        ["reopen", "alert-1", "--reason", "r", "--actor", "a"],
    ],
    ids=["no-actor", "no-reason", "no-alert-id", "blank-reason", "long-actor", "unknown-action"],
)
def test_bad_usage_exits_2(settings: Settings, args: list[str]) -> None:
    result = run(settings, *args)
    assert result.exit_code == 2, result.output
    assert control_records(settings) == []


def test_missing_urls_exit_2(settings: Settings) -> None:
    result = run(settings, "cancel", "alert-1", "--reason", "r", "--actor", "a", DATABASE_URL="")
    assert result.exit_code == 2
    assert "DATABASE_URL not set" in said(result)
    result = run(settings, "cancel", "alert-1", "--reason", "r", "--actor", "a", KAFKA_BOOTSTRAP_SERVERS="")
    assert result.exit_code == 2
    assert "KAFKA_BOOTSTRAP_SERVERS not set" in said(result)


def test_a_broker_that_does_not_answer_exits_1(settings: Settings) -> None:
    assert settings.database_url
    alert_id = insert_alert(settings.database_url)
    silent = f"127.0.0.1:{free_port()}"
    result = run(
        settings, "cancel", alert_id, "--reason", "r", "--actor", "a", KAFKA_BOOTSTRAP_SERVERS=silent
    )

    assert result.exit_code == 1
    assert "failed (503): the broker did not acknowledge the control record within 1 s" in said(result)
    assert control_records(settings) == []
