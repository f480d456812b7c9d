"""Gateway HTTP behaviour against a fake publisher: parsing, validation, answers, DLQ records.
(The real broker, the spool fallback and /healthz are in test_gateway_kafka.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.health import HEARTBEAT_KEY
from gateway.producer import SpoolUnavailable
from tests.support import GROUP_MESSAGE
from worktool.models import raw_record_key
from worktool.settings import Settings

SUCCESS = {"code": 0, "message": "success", "data": {}}
RESULT = {
    "messageId": "2020902840222093312",
    "errorCode": 0,
    "errorReason": "",
    "runTime": 1739160000000,
    "timeCost": 2.5,
    "type": 203,
    "rawMsg": '{"titleList":["A群"],"receivedContent":"...","type":203}',
}


class FakePublisher:
    """Stands in for gateway.producer.Publisher: remembers what was published."""

    def __init__(self, fail: Exception | None = None):
        self.records: list[tuple[str, str | None, dict[str, Any]]] = []
        self.spooled: list[tuple[str, str | None, dict[str, Any]]] = []
        self.fail = fail
        self.spooling = False
        self.spool_depth = 0

    async def publish(self, topic: str, key: str | None, value: bytes) -> bool:
        if self.fail is not None and topic.endswith("raw"):
            raise self.fail
        self.records.append((topic, key, orjson.loads(value)))
        return True

    async def spool(self, topic: str, key: str | None, value: bytes) -> None:
        self.spooled.append((topic, key, orjson.loads(value)))

    async def probe(self) -> bool:
        return True

    def on(self, topic: str) -> list[tuple[str | None, dict[str, Any]]]:
        return [(key, value) for t, key, value in self.records if t == topic]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_body_bytes=4096)


Call = Callable[..., Awaitable[httpx.Response]]


def run_with_client(
    settings: Settings, publisher: Any, body: Callable[[httpx.AsyncClient], Awaitable[None]]
) -> None:
    async def main() -> None:
        app = create_app(settings, producer=publisher)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            await body(client)

    asyncio.run(main())


def post_all(settings: Settings, publisher: Any, *requests: dict[str, Any]) -> list[httpx.Response]:
    """POST each request ({"path": ..., plus httpx.post kwargs}) and return the responses."""
    responses: list[httpx.Response] = []

    async def body(client: httpx.AsyncClient) -> None:
        for request in requests:
            request = dict(request)
            responses.append(await client.post(request.pop("path"), **request))

    run_with_client(settings, publisher, body)
    return responses


def test_json_message_is_wrapped_stamped_and_keyed(settings: Settings) -> None:
    publisher = FakePublisher()
    before = datetime.now(UTC)
    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", "json": GROUP_MESSAGE}
    )
    assert response.status_code == 200
    assert response.json() == SUCCESS
    ((key, record),) = publisher.on(settings.topic_raw)
    assert key == raw_record_key("message", "wt22", GROUP_MESSAGE) == "group:视频号运营A群"
    assert record["kind"] == "message" and record["robot_id"] == "wt22"
    assert record["body"] == GROUP_MESSAGE  # as received: atMe stays the string "true"
    received_at = datetime.fromisoformat(record["received_at"].replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= received_at <= datetime.now(UTC)
    assert record["received_at"].endswith("Z")


@pytest.mark.parametrize("kind", ["result", "qrcode"])
def test_result_and_qrcode_callbacks(settings: Settings, kind: str) -> None:
    publisher = FakePublisher()
    (response,) = post_all(
        settings, publisher, {"path": f"/worktool/callback/{kind}?robotId=wt22", "json": RESULT}
    )
    assert response.json() == SUCCESS
    ((key, record),) = publisher.on(settings.topic_raw)
    assert key == "robot:wt22"
    assert record["kind"] == kind and record["body"] == RESULT


def test_loose_types_are_accepted_and_kept_as_sent(settings: Settings) -> None:
    publisher = FakePublisher()
    private = {"spoken": "你好", "receivedName": "用户乙", "roomType": "2", "atMe": "false", "textType": "1"}
    responses = post_all(
        settings,
        publisher,
        {
            "path": "/worktool/callback/message?robotId=wt22",
            "json": {**GROUP_MESSAGE, "atMe": "false", "roomType": "1"},
        },
        {
            "path": "/worktool/callback/message?robotId=wt22",
            "json": {**GROUP_MESSAGE, "atMe": True, "roomType": 3},
        },
        {"path": "/worktool/callback/message?robotId=wt22", "json": private},
    )
    assert [r.status_code for r in responses] == [200, 200, 200]
    records = publisher.on(settings.topic_raw)
    assert records[0][1]["body"]["atMe"] == "false" and records[0][1]["body"]["roomType"] == "1"
    assert records[2][0] == "private:wt22:用户乙"


def test_form_bodies(settings: Settings) -> None:
    publisher = FakePublisher()
    form = {k: str(v) for k, v in GROUP_MESSAGE.items()}
    responses = post_all(
        settings,
        publisher,
        {"path": "/worktool/callback/message?robotId=wt22", "data": form},
        {"path": "/worktool/callback/message?robotId=wt22", "data": form, "files": {"fileBase64": ("a.txt", b"iVBORw0KGgo=")}},
        {"path": "/worktool/callback/result?robotId=wt22", "content": b"messageId=1&errorCode=0&successList=A&successList=B",
         "headers": {"content-type": "application/x-www-form-urlencoded"}},
    )  # fmt: skip
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
    (_, urlencoded), (_, multipart), (_, result) = publisher.on(settings.topic_raw)
    assert urlencoded["body"] == form  # form values stay strings
    assert multipart["body"] == {**form, "fileBase64": "iVBORw0KGgo="}
    assert result["body"] == {"messageId": "1", "errorCode": "0", "successList": ["A", "B"]}
    assert publisher.on(settings.topic_dlq) == []


@pytest.mark.parametrize("kind", ["online", "offline"])
def test_status_callbacks_take_anything(settings: Settings, kind: str) -> None:
    publisher = FakePublisher()
    path = f"/worktool/callback/{kind}?robotId=wt22"
    responses = post_all(
        settings,
        publisher,
        {"path": path, "json": {"status": 5, "timestamp": 1739160000000}},
        {"path": path, "content": "机器人已上线".encode(), "headers": {"content-type": "text/plain"}},
        {"path": path, "content": b""},
        {"path": path, "data": {"status": "6"}},
        {"path": path, "json": ["not", "an", "object"]},
    )
    assert [r.status_code for r in responses] == [200] * 5
    bodies = [record["body"] for _, record in publisher.on(settings.topic_raw)]
    assert bodies == [
        {"status": 5, "timestamp": 1739160000000},
        {"text": "机器人已上线"},
        {},
        {"status": "6"},
        {"text": '["not","an","object"]'},
    ]
    assert all(key == "robot:wt22" for key, _ in publisher.on(settings.topic_raw))


@pytest.mark.parametrize(
    ("request_kwargs", "status", "reason_part"),
    [
        ({"content": b'{"spoken": "hi", "receivedName": '}, 400, "not valid JSON"),
        ({"content": b"[1, 2]"}, 400, "JSON object"),
        ({"content": b""}, 400, "empty body"),
        ({"json": {**GROUP_MESSAGE, "receivedName": ""}}, 422, "receivedName"),
        ({"json": {k: v for k, v in GROUP_MESSAGE.items() if k != "receivedName"}}, 422, "receivedName"),
        ({"json": {**GROUP_MESSAGE, "roomType": "abc"}}, 422, "roomType"),
        ({"json": {**GROUP_MESSAGE, "atMe": "perhaps"}}, 422, "atMe"),
        ({"json": {**GROUP_MESSAGE, "roomType": 7}}, 422, "roomType"),
        ({"content": b"spoken=%FF%FE&receivedName=x", "headers": {"content-type": "application/x-www-form-urlencoded"}},
         400, "not UTF-8"),
    ],
)  # fmt: skip
def test_malformed_message_gets_4xx_and_goes_to_dlq(
    settings: Settings, request_kwargs: dict[str, Any], status: int, reason_part: str
) -> None:
    publisher = FakePublisher()
    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", **request_kwargs}
    )
    assert response.status_code == status
    answer = response.json()
    assert answer["code"] == -1 and reason_part in answer["message"]
    assert isinstance(answer["data"]["errors"], list)
    assert publisher.on(settings.topic_raw) == []
    ((key, dlq),) = publisher.on(settings.topic_dlq)
    assert key == "robot:wt22"
    assert dlq["stage"] == "gateway" and dlq["kind"] == "message" and dlq["robot_id"] == "wt22"
    assert reason_part in dlq["reason"]
    sent = request_kwargs.get("content", orjson.dumps(request_kwargs.get("json")))
    assert dlq["raw"] == sent.decode("utf-8", "replace")


def test_validation_errors_are_listed(settings: Settings) -> None:
    publisher = FakePublisher()
    body = {"spoken": "hi", "roomType": "x"}
    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", "json": body}
    )
    errors = response.json()["data"]["errors"]
    assert {tuple(e["loc"]) for e in errors} == {("receivedName",), ("roomType",)}
    assert all("input" not in e for e in errors)  # bodies may be big (images): not echoed


def test_wrong_types_in_result_callback(settings: Settings) -> None:
    publisher = FakePublisher()
    (response,) = post_all(
        settings,
        publisher,
        {"path": "/worktool/callback/result?robotId=wt22", "json": {**RESULT, "errorCode": "oops"}},
    )
    assert response.status_code == 422
    ((_, dlq),) = publisher.on(settings.topic_dlq)
    assert dlq["kind"] == "result" and "errorCode" in dlq["reason"]


@pytest.mark.parametrize("query", ["", "?robotId=", "?robotId=%20", "?robot=wt22"])
def test_missing_robot_id(settings: Settings, query: str) -> None:
    publisher = FakePublisher()
    (response,) = post_all(
        settings, publisher, {"path": f"/worktool/callback/message{query}", "json": GROUP_MESSAGE}
    )
    assert response.status_code == 400
    assert "robotId" in response.json()["message"]
    ((key, dlq),) = publisher.on(settings.topic_dlq)
    assert key is None and dlq["robot_id"] is None and "robotId" in dlq["reason"]
    assert orjson.loads(dlq["raw"]) == GROUP_MESSAGE


def test_oversized_body_announced_by_content_length(settings: Settings) -> None:
    publisher = FakePublisher()
    big = {**GROUP_MESSAGE, "fileBase64": "A" * 10_000}
    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", "json": big}
    )
    assert response.status_code == 413
    assert "exceeds the limit of 4096 bytes" in response.json()["message"]
    ((_, dlq),) = publisher.on(settings.topic_dlq)
    assert "exceeds" in dlq["reason"] and dlq["raw"].startswith('{"spoken"')
    assert publisher.on(settings.topic_raw) == []


def test_oversized_body_streamed_without_content_length(settings: Settings) -> None:
    publisher = FakePublisher()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"receivedName": "u", "fileBase64": "'
        for _ in range(10):
            yield b"A" * 1000

    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", "content": chunks()}
    )
    assert response.status_code == 413
    ((_, dlq),) = publisher.on(settings.topic_dlq)
    assert "exceeds the limit" in dlq["reason"]


def test_spool_unavailable_is_the_only_503(settings: Settings) -> None:
    publisher = FakePublisher(fail=SpoolUnavailable("disk full"))
    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", "json": GROUP_MESSAGE}
    )
    assert response.status_code == 503
    assert response.json()["code"] == -1


def test_unexpected_publish_error_spools_the_record(settings: Settings) -> None:
    publisher = FakePublisher(fail=RuntimeError("bug"))
    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", "json": GROUP_MESSAGE}
    )
    assert response.json() == SUCCESS
    ((topic, key, record),) = publisher.spooled
    assert topic == settings.topic_raw and key == "group:视频号运营A群" and record["body"] == GROUP_MESSAGE


def test_unknown_paths_and_methods_answer_json(settings: Settings) -> None:
    publisher = FakePublisher()
    responses: list[httpx.Response] = []

    async def body(client: httpx.AsyncClient) -> None:
        responses.append(await client.post("/worktool/callback/nope?robotId=x", json={}))
        responses.append(await client.get("/worktool/callback/message?robotId=x"))

    run_with_client(settings, publisher, body)
    assert [r.status_code for r in responses] == [404, 405]
    assert all(r.json()["code"] == -1 for r in responses)


def test_metrics_count_requests_and_dlq(settings: Settings) -> None:
    publisher = FakePublisher()
    text: list[str] = []

    async def body(client: httpx.AsyncClient) -> None:
        await client.post("/worktool/callback/qrcode?robotId=m1", json=RESULT)
        await client.post("/worktool/callback/qrcode?robotId=m1", content=b"{")
        text.append((await client.get("/metrics")).text)

    run_with_client(settings, publisher, body)
    (metrics,) = text
    assert 'worktool_gateway_requests_total{endpoint="qrcode",status="200"}' in metrics
    assert 'worktool_gateway_requests_total{endpoint="qrcode",status="400"}' in metrics
    assert 'worktool_gateway_request_seconds_bucket{endpoint="qrcode",le="0.005"}' in metrics
    assert 'worktool_gateway_dlq_records_total{reason="invalid_json"}' in metrics
    assert "worktool_gateway_spool_depth" in metrics


def test_heartbeat_key_matches_the_dataflow() -> None:
    from sinks.heartbeat import HEARTBEAT_KEY as written

    assert written == HEARTBEAT_KEY


def test_a_parsing_bug_still_keeps_the_bytes(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.app

    async def broken(*_args: Any) -> dict[str, Any]:
        raise KeyError("bug")

    monkeypatch.setattr(gateway.app, "decode_body", broken)
    publisher = FakePublisher()
    (response,) = post_all(
        settings, publisher, {"path": "/worktool/callback/message?robotId=wt22", "json": GROUP_MESSAGE}
    )
    assert response.status_code == 400
    ((_, dlq),) = publisher.on(settings.topic_dlq)
    assert dlq["reason"] == "unreadable body (KeyError)" and orjson.loads(dlq["raw"]) == GROUP_MESSAGE
