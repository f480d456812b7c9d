"""The callback fast path (gateway/app.py, GatewayAPI) answers exactly as the FastAPI route does.

A POST to /worktool/callback/KIND is served in front of FastAPI; the same handler stays registered as
a Starlette route, used when `fast_path` is off. A table of tricky requests, then generated ones, go
through both paths (each its own app, same request order): status, headers, body and every record
published (raw and DLQ, with the stamp's boot id and time set aside) must be the same. The raw record's
bytes, now written in one orjson call, must equal those of the `RawRecord` model.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import gateway.app
from fakes.publisher import RecordingPublisher
from gateway import metrics
from gateway.app import create_app, encode_record
from gateway.producer import SpoolUnavailable
from tests.support import GROUP_MESSAGE
from worktool.models import GatewaySeq, RawRecord
from worktool.settings import Settings

TOKENS = {"wt_auth": "s3cr3t-token"}
MSG = "/worktool/callback/message"
LIMITS = Settings().limits
JSON_HEADERS = {"content-type": "application/json"}


class FailingPublisher(RecordingPublisher):
    """Raw records fail with `error` (the DLQ still works)."""

    def __init__(self, error: Exception, spool_error: Exception | None = None) -> None:
        super().__init__()
        self.error = error
        self.spool_error = spool_error

    async def publish(self, topic: str, key: str | None, value: bytes) -> bool:
        if topic.endswith("raw"):
            raise self.error
        return await super().publish(topic, key, value)

    async def spool(self, topic: str, key: str | None, value: bytes) -> None:
        if self.spool_error is not None:
            raise self.spool_error
        await super().spool(topic, key, value)


def chunks(*parts: bytes) -> Any:
    async def stream() -> Any:
        for part in parts:
            yield part

    return stream()


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "xBOUNDARYx"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


MULTIPART_BODY, MULTIPART_TYPE = multipart({"receivedName": "甲", "groupName": "A群", "spoken": "hi"})
DEEP = b'{"a":' * 40 + b"1" + b"}" * 40

# (method, url, kwargs) - kwargs for httpx.AsyncClient.request; `content` may be a callable giving a
# fresh async iterator (a streamed body without Content-Length).
TRICKY: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", f"{MSG}?robotId=wt1", {"json": GROUP_MESSAGE}),
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {"content": orjson.dumps(GROUP_MESSAGE), "headers": {"content-type": "text/plain"}},
    ),
    ("POST", f"{MSG}?robotId=wt1", {"content": orjson.dumps(GROUP_MESSAGE)}),  # no content-type
    ("POST", f"{MSG}?robotId=wt1", {"data": {"receivedName": "甲", "groupName": "A群", "atMe": "false"}}),
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {
            "content": b"successList=a&successList=b&receivedName=x&roomType=2",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
    ),
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {"content": b"receivedName=%ff", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    ),
    ("POST", f"{MSG}?robotId=wt1", {"content": MULTIPART_BODY, "headers": {"content-type": MULTIPART_TYPE}}),
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}},
    ),
    ("POST", f"{MSG}?robotId=wt1", {"content": b""}),
    ("POST", f"{MSG}?robotId=wt1", {"content": b"   ", "headers": JSON_HEADERS}),
    ("POST", f"{MSG}?robotId=wt1", {"content": b"{", "headers": JSON_HEADERS}),
    ("POST", f"{MSG}?robotId=wt1", {"content": b"[1,2]", "headers": JSON_HEADERS}),
    ("POST", f"{MSG}?robotId=wt1", {"content": b'"\\ud800"', "headers": JSON_HEADERS}),
    ("POST", f"{MSG}?robotId=wt1", {"content": b"\xff\xfe{}", "headers": JSON_HEADERS}),
    ("POST", f"{MSG}?robotId=wt1", {"content": DEEP, "headers": JSON_HEADERS}),
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {"json": {**GROUP_MESSAGE, "extra": {"deep": [[[{"x": None}]]], "n": 2**64 - 1}}},
    ),
    ("POST", f"{MSG}?robotId=wt1", {"json": {**GROUP_MESSAGE, "spoken": "a\x00b", "textType": "3"}}),
    ("POST", f"{MSG}?robotId=wt1", {"json": {**GROUP_MESSAGE, "roomType": 9, "textType": -1}}),
    ("POST", f"{MSG}?robotId=wt1", {"json": {**GROUP_MESSAGE, "groupName": "g" * 5000}}),
    ("POST", f"{MSG}?robotId=wt1", {"json": {"spoken": "no sender"}}),
    ("POST", f"{MSG}?robotId=wt1", {"json": {"receivedName": "x", "roomType": 1}}),  # group without a name
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {"content": b'{"receivedName":"x","roomType":2,"big":123456789012345678901234567890}'},
    ),
    ("POST", f"{MSG}?robotId=wt1", {"content": b"x" * 5000, "headers": JSON_HEADERS}),  # over max_body_bytes
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {"content": lambda: chunks(b"{" * 3000, b"}" * 3000)},
    ),  # streamed, too large
    ("POST", f"{MSG}?robotId=wt1", {"content": lambda: chunks(b'{"receivedName":', b'"x","roomType":2}')}),
    (
        "POST",
        f"{MSG}?robotId=wt1",
        {"content": b"{}", "headers": {"content-length": "999999", **JSON_HEADERS}},
    ),
    ("POST", MSG, {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}?robotId=", {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}?robotId=%20%20", {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}?robotId=" + "r" * 300, {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}?robotId=a%01b", {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}?robotId=%E6%9C%BA%E5%99%A8+1&other=1&robotId=second", {"json": GROUP_MESSAGE}),
    (
        "POST",
        "/worktool/callback/result?robotId=wt1",
        {"json": {"messageId": "1", "errorCode": "7", "successList": ["a"]}},
    ),
    ("POST", "/worktool/callback/result?robotId=wt1", {"json": {"messageId": 1.5, "errorCode": 2**40}}),
    ("POST", "/worktool/callback/qrcode?robotId=wt1", {"json": {"groupName": "A群", "qrCode": "http://x"}}),
    ("POST", "/worktool/callback/online?robotId=wt1", {"content": b"just text \xff"}),
    ("POST", "/worktool/callback/online?robotId=wt1", {"content": b""}),
    ("POST", "/worktool/callback/offline?robotId=wt1", {"content": b"[1]", "headers": JSON_HEADERS}),
    ("POST", "/worktool/callback/offline?robotId=wt1", {"content": DEEP}),
    # Not the fast path: FastAPI answers these, the same whichever path is on.
    ("GET", f"{MSG}?robotId=wt1", {}),
    ("HEAD", f"{MSG}?robotId=wt1", {}),
    ("PUT", f"{MSG}?robotId=wt1", {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}/?robotId=wt1", {"json": GROUP_MESSAGE}),
    ("POST", "/worktool/callback/nope?robotId=wt1", {"json": {}}),
    ("POST", "/worktool/callback/Message?robotId=wt1", {"json": GROUP_MESSAGE}),
]


AUTH: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", f"{MSG}?robotId=wt_auth&token=s3cr3t-token", {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}?robotId=wt_auth&token=wrong", {"json": GROUP_MESSAGE}),
    ("POST", f"{MSG}?robotId=wt_auth", {"content": b"x" * 5000}),  # unauthorized and too large
    ("POST", f"{MSG}?robotId=wt1", {"json": GROUP_MESSAGE}),  # a robot without a token
    ("POST", MSG, {"json": GROUP_MESSAGE}),
    ("GET", f"{MSG}?robotId=wt_auth&token=s3cr3t-token", {}),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_body_bytes=4096)


def normalised(value: bytes) -> Any:
    """A published record with what differs between two apps by design set aside: the boot id of the
    sequence stamp and the reception time (checked separately to be a current 'Z' time)."""
    record = orjson.loads(value)
    stamp = record.pop("received_at")
    assert stamp.endswith("Z")
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=5)
    if isinstance(record.get("seq"), dict):
        record["seq"].pop("gw")
    return record


async def run_requests(
    settings: Settings,
    publisher: RecordingPublisher,
    fast: bool,
    requests: list[tuple[str, str, dict[str, Any]]],
) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    app = create_app(settings, producer=publisher)  # type: ignore[arg-type]
    app.fast_path = fast
    entered: list[str] = []

    @app.middleware("http")
    async def count(request: Any, call_next: Any) -> Any:  # noqa: ANN401
        entered.append((request.method, request.url.path))
        return await call_next(request)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    answers = []
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for method, url, kwargs in requests:
            kwargs = dict(kwargs)
            if callable(kwargs.get("content")):
                kwargs["content"] = kwargs["content"]()
            response = await client.request(method, url, **kwargs)
            headers = sorted((k, v) for k, v in response.headers.items() if k != "date")
            answers.append((response.status_code, headers, response.content))
    callbacks = {
        ("POST", path)
        for method, url, _ in requests
        if (path := url.split("?")[0]) in gateway.app.CALLBACK_PATHS
    }
    if fast:  # the fast path really bypasses FastAPI (its middleware never saw these requests)
        assert not callbacks & set(entered)
    else:
        assert callbacks & set(entered) == callbacks
    return answers


def counters() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Request counts by endpoint and status, latency observations by endpoint, DLQ records by reason."""
    values = {}
    for metric in (metrics.REQUESTS, metrics.LATENCY, metrics.DLQ):
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith(("_total", "_count")):
                    values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def both_paths(
    settings: Settings,
    requests: list[tuple[str, str, dict[str, Any]]],
    make_publisher: Any = RecordingPublisher,
) -> list[tuple[int, list[tuple[str, str]], bytes]]:
    results = []
    for fast in (False, True):
        publisher = make_publisher()
        before = counters()
        answers = asyncio.run(run_requests(settings, publisher, fast, requests))
        after = counters()
        counted = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
        records = [(topic, key, normalised(value)) for topic, key, value in publisher.records]
        results.append((answers, records, counted))
    (old_answers, old_records, old_counted), (new_answers, new_records, new_counted) = results
    assert new_counted == old_counted
    for request, old, new in zip(requests, old_answers, new_answers, strict=True):
        assert new == old, request[:2]
    assert new_records == old_records
    return new_answers


def test_tricky_requests_get_the_same_answers_and_records_on_both_paths(settings: Settings) -> None:
    answers = both_paths(settings, TRICKY)
    statuses = [status for status, _, _ in answers]
    # The table covers every kind of answer the gateway gives.
    assert {200, 307, 400, 404, 405, 413, 422}.issubset(statuses)
    assert answers[0][2] == gateway.app.SUCCESS


def test_webhook_tokens_get_the_same_answers_on_both_paths(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", max_body_bytes=4096, webhook_tokens=json.dumps(TOKENS))
    answers = both_paths(settings, AUTH)
    assert [status for status, _, _ in answers] == [200, 401, 401, 401, 401, 405]


@pytest.mark.parametrize(
    "make_publisher",
    [
        lambda: FailingPublisher(SpoolUnavailable("disk full")),
        lambda: FailingPublisher(RuntimeError("boom")),
        lambda: FailingPublisher(RuntimeError("boom"), spool_error=OSError("no disk")),
    ],
)
def test_publish_failures_get_the_same_answers_on_both_paths(settings: Settings, make_publisher: Any) -> None:
    requests = [
        ("POST", f"{MSG}?robotId=wt1", {"json": GROUP_MESSAGE}),
        ("POST", f"{MSG}?robotId=wt1", {"json": {}}),
    ]
    answers = both_paths(settings, requests, make_publisher)
    assert answers[1][0] == 422


def test_an_exception_escaping_the_handler_is_a_503_on_both_paths(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_query: bytes) -> str:
        raise KeyError("bug")

    monkeypatch.setattr(gateway.app, "robot_id_of", broken)
    (answer,) = both_paths(settings, [("POST", f"{MSG}?robotId=wt1", {"json": GROUP_MESSAGE})])
    assert answer[0] == 503 and orjson.loads(answer[2])["message"] == "internal error"


# ---------------------------------------------------------------------------------------------
# Generated requests and bodies


def json_values_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | text
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=12,
    )


json_values = json_values_of(st.text(max_size=20))  # lone surrogates too: bodies orjson cannot write
# What an HTTP client can send (no lone surrogates) for the requests through both paths.
sendable_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
field_values = st.one_of(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | sendable_text,
    st.sampled_from(["1", "2", "3", "true", "false", "", " 7 ", "0x1", "群"]),
)
message_bodies = st.fixed_dictionaries(
    {},
    optional={
        "spoken": field_values,
        "receivedName": field_values,
        "groupName": field_values,
        "groupRemark": field_values,
        "roomType": field_values,
        "atMe": field_values,
        "textType": field_values,
        "messageId": field_values,
        "errorCode": field_values,
        "extra": json_values_of(sendable_text),
    },
)
kinds = st.sampled_from(["message", "result", "qrcode", "online", "offline"])
encodings = st.sampled_from(["json", "form", "text"])


def as_request(kind: str, body: dict[str, Any], encoding: str) -> tuple[str, str, dict[str, Any]]:
    url = f"/worktool/callback/{kind}?robotId=gen"
    if encoding == "form":
        # json, not orjson: an integer beyond 64 bits becomes its text too
        flat = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in body.items()}
        return "POST", url, {"data": flat}
    try:
        content = orjson.dumps(body)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: send it as text
        content = json.dumps(body).encode()
    headers = JSON_HEADERS if encoding == "json" else {"content-type": "text/plain"}
    return "POST", url, {"content": content, "headers": headers}


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(kinds, message_bodies, encodings), min_size=1, max_size=8))
def test_generated_requests_get_the_same_answers_on_both_paths(settings: Settings, cases: list[Any]) -> None:
    both_paths(settings, [as_request(kind, body, encoding) for kind, body, encoding in cases])


@hsettings(max_examples=60, deadline=None)
@given(
    kind=kinds,
    robot_id=st.text(min_size=1, max_size=20),
    body=st.dictionaries(st.text(max_size=10), json_values, max_size=6),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    void=st.none() | st.lists(st.integers(1, 2**62), max_size=4),
)
def test_raw_record_bytes_are_those_of_the_model(
    kind: str, robot_id: str, body: dict[str, Any], at: datetime, void: list[int] | None
) -> None:
    seq = None if void is None else GatewaySeq.model_construct(gw="0123456789abcdef", n=7, void=void)
    try:
        expected: bytes | None = RawRecord(
            kind=kind, robot_id=robot_id, received_at=at, body=body, seq=seq
        ).to_json()  # type: ignore[arg-type]
    except (TypeError, orjson.JSONEncodeError):
        expected = None
    try:
        _, value = encode_record(kind, robot_id, body, at, LIMITS, seq)
    except gateway.app.Rejected as e:
        assert expected is None or len(expected) > LIMITS.raw_record_bytes, e.message
        return
    assert value == expected
