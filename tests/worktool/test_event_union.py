"""The typed events: every event of the catalogue round-trips through the discriminated union (its own
typed envelope and data model, the same bytes again), consumers match on the data type, an unknown
event name or data of another event is refused clearly, and an event is encoded once."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from worktool.events import (
    CATALOGUE,
    EVENT_TYPES,
    AlertRaised,
    AnyEventData,
    CommandResult,
    EventData,
    MonitorEvent,
    RobotStatus,
    parse_event,
)

AT = datetime(2026, 12, 3, 4, 5, 6, 789000, tzinfo=UTC)


def _value(tp: Any) -> Any:
    """A valid value of a field type (within every bound of the catalogue: 1 fits them all)."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _value(get_args(tp)[0])
    if origin is Literal:
        return get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in get_args(tp) if a is not type(None)))
    if origin is list:
        return [_value(get_args(tp)[0])]
    if origin is dict:
        key, value = get_args(tp)
        return {_value(key): _value(value)}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {name: _value(f.annotation) for name, f in tp.model_fields.items()}
    return {str: "x", int: 1, float: 1.0, bool: True, datetime: AT}[tp]


def _data(model: type[EventData]) -> EventData:
    return model.model_validate({name: _value(f.annotation) for name, f in model.model_fields.items()})


def test_the_union_is_the_catalogue():
    assert set(EVENT_TYPES) == set(CATALOGUE)
    assert set(get_args(AnyEventData)) == set(CATALOGUE.values())
    for name, envelope in EVENT_TYPES.items():
        assert issubclass(envelope, MonitorEvent)
        assert envelope.model_fields["data"].annotation is CATALOGUE[name]


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_catalogue_event_round_trips_through_the_union(name):
    model = CATALOGUE[name]
    if "robot_id" not in model.model_fields:  # `event()` takes the data fields as keywords
        assert type(model.event(event_time=AT, **_data(model).model_dump())) is EVENT_TYPES[name]
    for event in (
        _data(model).at(AT, "group:g", "wt_1"),  # the hot path (unvalidated)
        EVENT_TYPES[name].model_validate(
            {
                "event": name,
                "event_time": AT,
                "session_id": "group:g",
                "robot_id": "wt_1",
                "data": _data(model),
            }
        ),
    ):
        assert type(event) is EVENT_TYPES[name]
        raw = event.to_json()
        parsed = parse_event(raw)
        assert type(parsed) is EVENT_TYPES[name] and type(parsed.data) is model
        assert parsed == event
        assert parsed.to_json() == raw
        assert MonitorEvent.model_validate_json(raw).data == event.data  # the plain envelope agrees


def test_consumers_match_on_the_data_type():
    def kind(event: MonitorEvent) -> str:
        match event.data:
            case AlertRaised(level=level):
                return f"alert at level {level}"
            case CommandResult(status="failed"):
                return "command failed"
            case RobotStatus(status=status):
                return f"robot {status}"
            case _:
                return "other"

    alert = parse_event(_data(AlertRaised).at(AT).to_json())
    status = parse_event(RobotStatus.make(status="offline").at(AT, robot_id="wt_1").to_json())
    failed = CommandResult.make(command_id="c1", status="failed").at(AT)
    assert [kind(alert), kind(status), kind(failed)] == [
        "alert at level 1",
        "robot offline",
        "command failed",
    ]


def test_an_unknown_event_name_is_refused_naming_the_known_ones():
    with pytest.raises(ValidationError) as e:
        parse_event(b'{"event":"alert_exploded","event_time":"2026-12-03T04:05:06.789Z","data":{}}')
    text = str(e.value)
    assert "'alert_exploded'" in text and "does not match any of the expected tags" in text
    assert "'alert_raised'" in text and "for MonitorEvent" in text
    with pytest.raises(ValidationError):  # no event name at all
        parse_event(b'{"event_time":"2026-12-03T04:05:06.789Z","data":{"status":"online"}}')


def test_data_of_another_event_is_refused():
    raw = RobotStatus.make(status="online").at(AT).to_json().replace(b'"robot_status"', b'"command_result"')
    with pytest.raises(ValidationError, match="command_id"):
        parse_event(raw)


def test_an_event_is_encoded_once_and_compares_by_its_fields():
    event = RobotStatus.make(status="online").at(AT, robot_id="wt_1")
    first = event.to_json()
    assert event.to_json() is first  # kept: every sink shares these bytes
    assert first == b'{"schema_version":1,"event":"robot_status","event_time":"2026-12-03T04:05:06.789Z",' \
        b'"session_id":null,"robot_id":"wt_1","data":{"status":"online"}}'  # fmt: skip
    assert event == RobotStatus.make(status="online").at(AT, robot_id="wt_1")  # the kept bytes don't count


def test_the_fast_encoder_writes_the_same_bytes_as_the_careful_one():
    """Events are encoded by pydantic-core (fast) unless the bytes hold 19+ digits in a row, where orjson
    decides (it refuses integers beyond 64 bits). Both must write the same bytes for every event a day
    produces, and for a long number inside a text."""
    import io

    import orjson

    from dataflows.replay import replay_archive
    from tests.support import REPO
    from worktool.events import MessageClassified, has_long_digits
    from worktool.settings import Settings

    out = io.BytesIO()
    settings = Settings(config_path=REPO / "config" / "business.example.yaml", llm_provider=None)
    replay_archive(REPO / "commands" / "data" / "sample_day.jsonl", out, settings=settings)
    events = [parse_event(line) for line in out.getvalue().splitlines()]
    assert len({e.event for e in events}) >= 10
    for event in events:
        careful = orjson.dumps(event.model_dump(mode="json"))
        assert event.__pydantic_serializer__.to_json(event) == careful
        assert event.to_json() == careful
    data = _data(MessageClassified).model_copy(update={"message_id": "订单号 12345678901234567890123"})
    long_text = data.at(AT, session_id="s")
    assert has_long_digits(long_text.to_json()) and long_text.to_json() == orjson.dumps(
        long_text.model_dump(mode="json")
    )


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]),
)
def test_event_times_are_written_in_utc_with_milliseconds(naive: datetime, tz: timezone) -> None:
    """`iso` (every datetime of every event): the contract's format from any time zone."""
    from worktool.models import iso

    dt = naive.replace(tzinfo=tz)
    expected = dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    assert iso(dt) == expected
    # again (the kept text), and the same instant seen from another zone first
    other = dt.astimezone(timezone(timedelta(hours=3)))
    assert iso(dt) == iso(other) == iso(dt.astimezone(UTC)) == expected


@pytest.mark.parametrize(
    ("wire", "long"),
    [(b'{"n":1234567890123456789}', True), (b'{"n":-9223372036854775809}', True),
     (b'{"n":123456789012345678}', False), (b'"2026-12-03T04:05:06.789Z" 12345678 90123456789', False),
     ("订单号12345678901234567890".encode(), True), (b"", False)],
)  # fmt: skip
def test_a_long_run_of_digits_is_found(wire: bytes, long: bool) -> None:
    from worktool.events import has_long_digits

    assert has_long_digits(wire) is long


def test_every_typed_envelope_pickles() -> None:
    """Events cross processes in a cluster (the desk's inputs) and sit in snapshots: pickle must find
    each typed envelope by its name."""
    import pickle

    from worktool.events import EVENT_TYPES

    for cls in EVENT_TYPES.values():
        assert pickle.loads(pickle.dumps(cls)) is cls
