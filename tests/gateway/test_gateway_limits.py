"""The gateway accepts only what every later stage can process: integers in range, bounded ids and
names, bounded nesting, records within the size every producer is configured for. Refused bodies get a
4xx and exactly one DLQ record; accepted ones a 200 and exactly one raw record. Against a fake
publisher; the real broker, the running flow and PostgreSQL are in tests/e2e/test_hostile_callbacks.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main
from pydantic import ValidationError

from dataflows.flow import FlowOptions, FlowSinks, build_flow
from fakes.publisher import RecordingPublisher
from gateway.app import create_app
from gateway.producer import producer_config as gateway_producer_config
from operators.classify import RuleClassifier
from operators.parse import parse_message
from sinks.kafka import producer_config as sink_producer_config
from tests.support import GROUP_MESSAGE
from worktool.config import BusinessConfig
from worktool.models import CALLBACK_MODELS, DlqRecord, RawRecord, json_depth, numeric_fields
from worktool.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_body_bytes=64 * 1024)


def post(settings: Settings, path: str, **kwargs: Any) -> tuple[httpx.Response, RecordingPublisher]:
    publisher = RecordingPublisher(spool_allowed=False)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(settings, producer=publisher))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.post(path, **kwargs)

    return asyncio.run(main()), publisher


def refused(settings: Settings, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
    """POST, expect `status` and exactly one DLQ record and no raw record; return the DLQ record."""
    response, publisher = post(settings, path, **kwargs)
    assert response.status_code == status, response.text
    assert publisher.values(settings.topic_raw) == []
    (value,) = publisher.values(settings.topic_dlq)
    assert len(value) <= settings.limits.record_max_bytes
    record = DlqRecord.model_validate_json(value)
    assert record.stage == "gateway"
    return record.model_dump()


def accepted(settings: Settings, path: str, **kwargs: Any) -> RawRecord:
    response, publisher = post(settings, path, **kwargs)
    assert response.status_code == 200, response.text
    assert publisher.values(settings.topic_dlq) == []
    (value,) = publisher.values(settings.topic_raw)
    assert len(value) <= settings.limits.raw_record_bytes
    return RawRecord.model_validate_json(value)


MESSAGE = "/worktool/callback/message?robotId=wt22"
RESULT = "/worktool/callback/result?robotId=wt22"


def nested(depth: int) -> bytes:
    """A message body whose extra key holds lists nested so that the body is `depth` levels deep."""
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    return orjson.dumps(GROUP_MESSAGE)[:-1] + b',"extra":' + inner + b"}"


# ---------------------------------------------------------------------------------------------
# Integers


@pytest.mark.parametrize(
    "text_type",
    ["99999999999999999999", 99999999999999999999, "9" * 5000, 2**63, 40000, -1],
    ids=["huge-string", "huge-json", "5000-digits", "int64+1", "beyond-smallint", "negative"],
)
def test_text_type_out_of_range_is_refused(settings: Settings, text_type: Any) -> None:
    dlq = refused(settings, MESSAGE, 422, json={**GROUP_MESSAGE, "textType": text_type})
    assert "textType" in dlq["reason"]


@pytest.mark.parametrize("field", ["errorCode", "runTime", "type"])
def test_result_integers_beyond_int64_are_refused(settings: Settings, field: str) -> None:
    dlq = refused(settings, RESULT, 422, json={"messageId": "1", field: "99999999999999999999"})
    assert field in dlq["reason"]


def test_result_integers_at_the_int64_bounds_are_accepted(settings: Settings) -> None:
    body = {"messageId": "1", "runTime": str(2**63 - 1), "type": str(-(2**63))}
    assert accepted(settings, RESULT, data=body).body == body  # form values stay text


BASE_BODIES = {"message": {**GROUP_MESSAGE, "roomType": 3}, "result": {"messageId": "1"},
               "qrcode": {"messageId": "1", "groupName": "A群"}}  # fmt: skip
INTEGER_FIELDS = [
    (kind, f.path, f.low, f.high)
    for kind in BASE_BODIES
    for f in numeric_fields(CALLBACK_MODELS[kind])
    if not f.is_float
]


@pytest.mark.parametrize(
    ("kind", "field", "low", "high"), INTEGER_FIELDS, ids=[f"{k}.{f}" for k, f, *_ in INTEGER_FIELDS]
)
def test_every_integer_field_accepts_exactly_what_can_be_stored(
    settings: Settings, kind: str, field: str, low: int, high: int
) -> None:
    """Issue 13, finding 4: errorCode 9223372036854775807 was answered 200, then dead-lettered by the
    Postgres sink (integer column). Each integer field's bounds come from where it is stored
    (worktool.models.StoredIn, checked against the schema by tests/infra/test_numeric_limits.py): the
    bounds are accepted, one past them is refused with a 422 and a DLQ record."""
    path = f"/worktool/callback/{kind}?robotId=wt22"
    for value in (low, high):
        body = {**BASE_BODIES[kind], field: value}
        assert accepted(settings, path, json=body).body[field] == value
    for value in (low - 1, high + 1):
        dlq = refused(settings, path, 422, json={**BASE_BODIES[kind], field: value})
        assert field in dlq["reason"]


def test_time_cost_must_be_finite(settings: Settings) -> None:
    big = {"messageId": "1", "timeCost": 1.7976931348623157e308}
    assert accepted(settings, RESULT, json=big).body == big
    dlq = refused(settings, RESULT, 422, data={"messageId": "1", "timeCost": "inf"})
    assert "timeCost" in dlq["reason"]


def test_message_id_must_stay_exact(settings: Settings) -> None:
    # A JSON number beyond 64 bits reaches the gateway as a rounded float: refused, the bytes kept.
    raw = b'{"messageId": 20209028402220933120, "errorCode": 0}'
    dlq = refused(settings, RESULT, 422, content=raw, headers={"content-type": "application/json"})
    assert "20209028402220933120" in dlq["raw"]
    # Within 64 bits a number is an exact id.
    assert accepted(settings, RESULT, json={"messageId": 2020902840222093312}).body["messageId"] == (
        2020902840222093312
    )


# ---------------------------------------------------------------------------------------------
# Ids and names


def test_robot_id_too_long_is_refused(settings: Settings) -> None:
    robot_id = "r" * 8000
    dlq = refused(settings, f"/worktool/callback/message?robotId={robot_id}", 422, json=GROUP_MESSAGE)
    assert "robotId" in dlq["reason"] and dlq["robot_id"] == robot_id


def test_robot_id_at_the_limit_is_accepted(settings: Settings) -> None:
    robot_id = "r" * settings.max_id_chars
    assert accepted(settings, f"/worktool/callback/online?robotId={robot_id}").robot_id == robot_id


@pytest.mark.parametrize("char", ["\x00", "\n", "\x7f"])
def test_robot_id_with_control_characters_is_refused(settings: Settings, char: str) -> None:
    dlq = refused(settings, f"/worktool/callback/online?robotId=wt{quote(char)}22", 422)
    assert "control characters" in dlq["reason"]


@pytest.mark.parametrize("field", ["receivedName", "groupName", "groupRemark"])
@pytest.mark.parametrize("encoding", ["json", "form"])
def test_names_too_long_are_refused(settings: Settings, field: str, encoding: str) -> None:
    body = {**GROUP_MESSAGE, field: "名" * (settings.max_name_chars + 1)}
    kwargs = {"json": body} if encoding == "json" else {"data": {k: str(v) for k, v in body.items()}}
    dlq = refused(settings, MESSAGE, 422, **kwargs)
    assert field in dlq["reason"]


def test_names_at_the_limit_are_accepted(settings: Settings) -> None:
    name = "名" * settings.max_name_chars
    body = {**GROUP_MESSAGE, "receivedName": name, "groupName": name, "groupRemark": name}
    assert accepted(settings, MESSAGE, json=body).body == body


def test_group_name_of_a_result_is_bounded_too(settings: Settings) -> None:
    refused(settings, RESULT, 422, json={"messageId": "1", "groupName": "g" * 1000})


def test_group_message_without_a_group_name_is_refused(settings: Settings) -> None:
    # The dataflow could not put it in a session: refused here rather than dead-lettered after a 200.
    refused(settings, MESSAGE, 422, json={**GROUP_MESSAGE, "groupName": "", "groupRemark": ""})


# ---------------------------------------------------------------------------------------------
# Text PostgreSQL cannot store


def test_nul_is_kept_in_the_raw_record_and_cleaned_in_the_parsed_message(settings: Settings) -> None:
    body = {**GROUP_MESSAGE, "spoken": "a\x00b", "rawSpoken": "@x a\x00b", "receivedName": "甲\x00"}
    record = accepted(settings, MESSAGE, json=body)
    assert record.body == body  # the archive keeps what WorkTool sent
    _, message = parse_message(record)
    assert (message.text, message.raw_text, message.sender_name) == ("a\ufffdb", "@x a\ufffdb", "甲\ufffd")
    assert "\x00" not in message.session_id + message.reply_target


def test_nul_in_a_form_body_is_cleaned_the_same_way(settings: Settings) -> None:
    form = {k: str(v) for k, v in GROUP_MESSAGE.items()} | {"spoken": "a\x00b"}
    _, message = parse_message(accepted(settings, MESSAGE, data=form))
    assert message.text == "a\ufffdb"


# ---------------------------------------------------------------------------------------------
# Nesting and size


@pytest.mark.parametrize("depth", [33, 254, 255, 1024])
def test_deep_json_is_refused(settings: Settings, depth: int) -> None:
    raw = nested(depth)
    dlq = refused(settings, MESSAGE, 422, content=raw, headers={"content-type": "application/json"})
    assert "nested" in dlq["reason"] and dlq["raw"] == raw.decode()


def test_deep_json_of_an_undocumented_kind_is_refused(settings: Settings) -> None:
    raw = b'{"status":' + b"[" * 300 + b"]" * 300 + b"}"
    refused(settings, "/worktool/callback/online?robotId=wt22", 422, content=raw)


def test_json_nested_beyond_the_parser_limit_is_refused(settings: Settings) -> None:
    refused(settings, MESSAGE, 400, content=nested(1100), headers={"content-type": "application/json"})


def test_json_at_the_depth_limit_is_accepted(settings: Settings) -> None:
    raw = nested(settings.max_json_depth)
    record = accepted(settings, MESSAGE, content=raw, headers={"content-type": "application/json"})
    assert json_depth(record.body) == settings.max_json_depth
    assert json_depth(orjson.loads(record.to_json())) == settings.max_json_depth + 1


def test_body_that_grows_past_the_record_limit_when_encoded_is_refused(settings: Settings) -> None:
    # Each %01 (3 bytes) becomes \u0001 (6 bytes) in the JSON record: within max_body_bytes as sent,
    # beyond raw_record_bytes once encoded.
    prefix = "&".join(f"{k}={quote(str(v))}" for k, v in GROUP_MESSAGE.items()) + "&x="
    form = prefix + "%01" * ((settings.max_body_bytes - len(prefix)) // 3)
    assert len(form) <= settings.max_body_bytes
    dlq = refused(
        settings, MESSAGE, 413, content=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "encodes to a record" in dlq["reason"]


def test_control_bytes_of_an_undocumented_kind_fit_the_dlq(settings: Settings) -> None:
    # 60 KiB of \x01 as text: 6x larger once JSON-escaped, so neither record may simply wrap it.
    raw = b"\x01" * (60 * 1024)
    dlq = refused(settings, "/worktool/callback/offline?robotId=wt22", 413, content=raw)
    assert dlq["truncated"] and set(dlq["raw"]) == {"\x01"}


def test_oversized_body_leaves_a_fitting_dlq_record(settings: Settings) -> None:
    dlq = refused(settings, MESSAGE, 413, content=b"x" * (settings.max_body_bytes + 1))
    assert "exceeds the limit" in dlq["reason"]


# ---------------------------------------------------------------------------------------------
# Every stage agrees


def test_every_producer_takes_the_largest_record_of_any_stage(settings: Settings) -> None:
    limits = settings.limits
    gateway = gateway_producer_config(settings)["message.max.bytes"]
    sinks = sink_producer_config("127.0.0.1:9092", limits)["message.max.bytes"]
    assert gateway == sinks == limits.message_max_bytes > limits.record_max_bytes > limits.raw_record_bytes


def test_largest_accepted_message_gives_events_within_the_record_limit(settings: Settings) -> None:
    """The worst case of RecordLimits' derivation, measured: a message whose text is all mentions and
    whose rawSpoken is empty (so the event carries the text as text, raw_text and mentions)."""
    limits = settings.limits
    overhead = len(orjson.dumps({**GROUP_MESSAGE, "spoken": "", "rawSpoken": ""}))
    text = "".join(f"@{i}" for i in range(10**6))[: limits.max_body_bytes - overhead]
    record = accepted(settings, MESSAGE, json={**GROUP_MESSAGE, "spoken": text, "rawSpoken": ""})

    events: list[Any] = []
    dlq: list[Any] = []
    flow = build_flow(
        TestingSource([record.to_json()]),
        FlowSinks(events=[TestingSink(events)], dlq=[TestingSink(dlq)]),
        RuleClassifier(BusinessConfig()),
        FlowOptions(shards=2, dedup_window=timedelta(seconds=10)),
    )
    run_main(flow, epoch_interval=timedelta(0))

    assert dlq == []
    sizes = {e.event: len(e.to_json()) for e in events}
    assert sizes["message_classified"] > 3 * limits.max_body_bytes  # the text really is there 3+ times
    assert max(sizes.values()) <= limits.record_max_bytes


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"max_json_depth": 254}, ["max_json_depth"]),
        ({"max_name_chars": 600}, ["max_name_chars"]),
        ({"max_id_chars": 400}, ["max_id_chars"]),
        ({"max_body_bytes": 30 * 1024 * 1024}, ["max_body_bytes"]),
        ({"max_body_bytes": 0, "max_json_depth": 0}, ["max_body_bytes", "max_json_depth"]),
    ],
)
def test_inconsistent_limits_are_refused_at_start_up(overrides: dict[str, int], names: list[str]) -> None:
    with pytest.raises(ValidationError, match="inconsistent record limits") as info:
        Settings(**overrides)
    for name in names:
        assert name in str(info.value)


def test_default_limits_are_consistent() -> None:
    limits = Settings().limits
    assert limits.problems() == []
    assert limits.message_max_bytes < 10 * 1024 * 1024  # 2 MiB bodies: under 10 MB per record
