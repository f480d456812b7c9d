"""Webhook tokens and the /metrics bearer token (gateway/auth.py and its hook in gateway/app.py), against
a fake publisher: who gets 200, who gets 401, what reaches the DLQ, and that no token is ever written."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fakes.publisher import RecordingPublisher
from gateway.app import create_app
from gateway.auth import AuthConfigError, MetricsAuth, WebhookAuth, load_webhook_tokens, strip_token
from tests.support import GROUP_MESSAGE
from worktool.settings import Settings

TOKENS = {"wt_day_01": "s3cr3t-day", "wt_night_01": "s3cr3t+night/é"}


def post_all(settings: Settings, requests: list[dict[str, Any]]) -> tuple[list[httpx.Response], Any]:
    publisher = RecordingPublisher()

    async def main() -> list[httpx.Response]:
        app = create_app(settings, producer=publisher)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return [
                await client.post("/worktool/callback/message", json=GROUP_MESSAGE, **request)
                for request in requests
            ]

    return asyncio.run(main()), publisher


def test_without_tokens_every_robot_is_accepted_and_a_warning_says_the_webhook_is_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="gateway.auth"):
        responses, publisher = post_all(settings, [{"params": {"robotId": "anyone"}}])
    assert [r.status_code for r in responses] == [200]
    assert len(publisher.on(settings.topic_raw)) == 1
    assert any("webhook is OPEN" in r.getMessage() for r in caplog.records)


def test_tokens_right_wrong_missing_and_unknown_robot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path, webhook_tokens=json.dumps(TOKENS))
    with caplog.at_level(logging.DEBUG):
        responses, publisher = post_all(
            settings,
            [
                {"params": {"robotId": "wt_day_01", "token": TOKENS["wt_day_01"]}},
                # A token with reserved characters arrives URL-encoded.
                {"params": {"robotId": "wt_night_01", "token": TOKENS["wt_night_01"]}},
                {"params": {"robotId": "wt_day_01", "token": "guess"}},
                {"params": {"robotId": "wt_day_01"}},
                {"params": {"robotId": "wt_intruder", "token": TOKENS["wt_day_01"]}},
                # Another robot's token is a wrong token.
                {"params": {"robotId": "wt_night_01", "token": TOKENS["wt_day_01"]}},
            ],
        )
    assert [r.status_code for r in responses] == [200, 200, 401, 401, 401, 401]
    # The caller learns nothing about which robots exist or what was wrong.
    assert {r.text for r in responses[2:]} == {responses[2].text}
    assert responses[2].json()["message"] == "unauthorized"

    raw = publisher.on(settings.topic_raw)
    assert [r["robot_id"] for r in raw] == ["wt_day_01", "wt_night_01"]
    dlq = publisher.on(settings.topic_dlq)
    assert [(d["stage"], d["robot_id"], d["reason"]) for d in dlq] == [
        ("gateway", "wt_day_01", "unauthorized: wrong token"),
        ("gateway", "wt_day_01", "unauthorized: missing token"),
        ("gateway", "wt_intruder", "unauthorized: unknown robot"),
        ("gateway", "wt_night_01", "unauthorized: wrong token"),
    ]
    # The body is kept (a robot registered with a wrong token loses nothing for good).
    assert all(orjson.loads(d["raw"]) == GROUP_MESSAGE for d in dlq)

    # No token in anything written: records, DLQ, logs.
    written = b"".join(value for _t, _k, value in publisher.records).decode()
    # (The test client's own request log shows the URL; the gateway's logs must not.)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")
    for token in [*TOKENS.values(), "guess"]:
        assert token not in written and token not in logged


def test_an_unauthorized_request_counts_in_metrics(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, webhook_tokens=json.dumps(TOKENS))
    publisher = RecordingPublisher()

    async def main() -> str:
        app = create_app(settings, producer=publisher)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            await client.post("/worktool/callback/message", params={"robotId": "x"}, json=GROUP_MESSAGE)
            return (await client.get("/metrics")).text

    assert 'worktool_gateway_dlq_records_total{reason="unauthorized"}' in asyncio.run(main())


def test_tokens_file_wins_and_must_be_private(tmp_path: Path) -> None:
    secrets = tmp_path / "webhook-tokens.json"
    secrets.write_text(json.dumps({"wt_day_01": "from-file", "wt_b": "b"}))
    secrets.chmod(0o600)
    settings = Settings(
        data_dir=tmp_path, webhook_tokens=json.dumps({"wt_day_01": "from-env"}), webhook_tokens_file=secrets
    )
    assert load_webhook_tokens(settings) == {"wt_day_01": "from-file", "wt_b": "b"}

    for mode in (0o640, 0o604, 0o660):
        secrets.chmod(mode)
        with pytest.raises(AuthConfigError, match="chmod 600"):
            load_webhook_tokens(settings)
    secrets.chmod(0o600)

    missing = settings.model_copy(update={"webhook_tokens_file": tmp_path / "nope.json"})
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_webhook_tokens(missing)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('{"wt_a": "zqx-secret', "not valid JSON"),
        ('["zqx-secret"]', "JSON object"),
        ('{"wt_a": ""}', "non-empty string"),
        ('{"wt_a": 42}', "non-empty string"),
    ],
)
def test_malformed_tokens_refuse_to_start_without_echoing_them(
    tmp_path: Path, value: str, error: str
) -> None:
    settings = Settings(data_dir=tmp_path, webhook_tokens=value)
    with pytest.raises(AuthConfigError, match=error) as raised:
        create_app(settings, producer=RecordingPublisher())  # type: ignore[arg-type]
    assert "zqx" not in str(raised.value)


def test_refusal_is_none_only_for_the_right_token() -> None:
    auth = WebhookAuth({"r": "t"})
    assert auth.refusal("r", b"robotId=r&token=t") is None
    assert auth.refusal("r", b"token=t&robotId=r") is None
    assert auth.refusal("r", b"robotId=r&token=t2") == "unauthorized: wrong token"
    assert auth.refusal("r", b"robotId=r&token=") == "unauthorized: wrong token"
    assert auth.refusal("r", b"robotId=r&tokens=t") == "unauthorized: missing token"
    assert WebhookAuth({}).refusal("anyone", b"") is None
    assert strip_token("robotId=r&token=t") == "robotId=r&token=***"


def test_metrics_need_the_bearer_token_when_configured(tmp_path: Path) -> None:
    async def get_metrics(settings: Settings, headers: dict[str, str]) -> httpx.Response:
        app = create_app(settings, producer=RecordingPublisher())  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.get("/metrics", headers=headers)

    protected = Settings(data_dir=tmp_path, metrics_token="m-token")
    assert asyncio.run(get_metrics(protected, {})).status_code == 401
    wrong = asyncio.run(get_metrics(protected, {"Authorization": "Bearer nope"}))
    assert wrong.status_code == 401 and "worktool_gateway" not in wrong.text
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    right = asyncio.run(get_metrics(protected, {"Authorization": "Bearer m-token"}))
    assert right.status_code == 200 and "worktool_gateway_spool_depth" in right.text

    open_metrics = asyncio.run(get_metrics(Settings(data_dir=tmp_path), {}))
    assert open_metrics.status_code == 200
    assert MetricsAuth(None).allows(None) and not MetricsAuth("x").allows("Bearer y")
