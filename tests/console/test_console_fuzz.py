"""schemathesis against the console's own OpenAPI document: generated requests, valid (positive) and
invalid (negative), to every operation of the in-process app with its real lifespan, a migrated database
and the broker, authenticated as an admin account. No answer may be a 5xx. `worktool chaos` runs more
examples (WORKTOOL_CHAOS_SCALE)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from console.app import create_app
from console.llm_keys import generate_secrets_key
from tests.console.alert_rows import insert_alert
from tests.console.console_client import login
from tests.console.console_rows import insert_session
from tests.support import chaos_scale
from worktool.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

EXAMPLES = 12  # per operation and mode, times chaos_scale(): the scale-1 run takes well under a minute
SKIPPED = {"/api/monitor/stream"}  # server-sent events: an answer that never ends (test_monitor_*.py)


def _request(case: Any, auth: dict[str, str]) -> dict[str, Any]:
    """The case as keyword arguments of an httpx request."""
    kwargs = case.as_transport_kwargs(base_url="http://console", headers=auth)
    if isinstance(kwargs.get("data"), bytes | str):
        kwargs["content"] = kwargs.pop("data")
    return {k: v for k, v in kwargs.items() if k in {"method", "url", "params", "headers", "json", "content"}}


def test_no_generated_request_gets_a_server_error(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    alert_id = insert_alert(fresh_database_url)
    insert_session(fresh_database_url, "group:视频号运营A群", messages=3)
    fuzzed = settings.model_copy(update={"secrets_key": generate_secrets_key()})
    failures: list[str] = []
    calls = 0
    # An exception in the app is its 500 here (recorded with the request), not an error of the test.
    app = create_app(fuzzed)
    with TestClient(app, base_url="http://console", raise_server_exceptions=False) as client:
        auth = login(client, "admin")
        schema = schemathesis.openapi.from_dict(app.openapi())
        operations = [op.ok() for op in schema.get_all_operations()]
        operations = [op for op in operations if op.path not in SKIPPED]
        assert len(operations) >= 15, [op.label for op in operations]
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                calls += _fuzz(client, operation, mode, auth, failures)
        still_there = client.get(f"/api/alerts/{alert_id}", headers=auth)

    assert failures == [], f"{len(failures)} of {calls} requests got a 5xx:\n" + "\n".join(failures[:20])
    assert still_there.status_code == 200  # the app still answers after the run


def _fuzz(
    client: TestClient, operation: Any, mode: GenerationMode, auth: dict[str, str], failures: list[str]
) -> int:
    calls = 0

    @settings(
        max_examples=EXAMPLES * chaos_scale(),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        request = _request(case, auth)
        response = client.request(**request)
        calls += 1
        if response.status_code >= 500:
            failures.append(
                f"{operation.label} [{mode.value}] -> {response.status_code} {response.text[:200]}: "
                f"{ {k: v for k, v in request.items() if k != 'headers'} }"
            )

    try:
        run()
    except Unsatisfiable:  # nothing of the operation can be made invalid (no parameter, no body)
        assert mode == GenerationMode.NEGATIVE, operation.label
    return calls
