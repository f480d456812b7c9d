"""Encoding an event: the digit-run search (`has_long_digits`) is skipped for the events whose schema holds
no integer (`_INTEGER_FREE`), because for them orjson, which that search hands an event to, writes
exactly pydantic-core's bytes; and `iso` writes every datetime as before (isoformat with milliseconds)."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, get_args, get_origin

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from worktool.events import (
    _INTEGER_FREE,
    CATALOGUE,
    SCHEMA_VERSION,
    AlertRaised,
    CommandCreated,
    CustomerUpdated,
    EventData,
    MessageClassified,
    RobotStatus,
    SessionState,
    _to_json,
    construct,
    may_hold_integer,
)
from worktool.models import iso

AT = datetime(2026, 12, 3, 4, 5, 6, 789000, tzinfo=UTC)

# Text of any character but a lone surrogate (which both encoders refuse), often around a long run of digits.
_ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_TEXT = _ANY_TEXT | st.builds(
    lambda before, digits, after: before + digits + after,
    _ANY_TEXT,
    st.from_regex(r"[0-9]{19,30}", fullmatch=True),
    _ANY_TEXT,
)
_TIMES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.just(AT)


def _values(tp: Any) -> st.SearchStrategy[Any]:
    """Any value of a field type, outside the fields' bounds too (the hot path does not validate)."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _values(get_args(tp)[0])
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_values(a) for a in get_args(tp)])
    if origin is list:
        return st.lists(_values(get_args(tp)[0]), max_size=3)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        fields = {name: _values(f.annotation) for name, f in tp.model_fields.items()}
        return st.fixed_dictionaries(fields).map(lambda values: construct(tp, **values))
    return {
        str: _TEXT,
        float: st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        datetime: _TIMES,
        type(None): st.none(),
    }[tp]


def _events(model: type[EventData]) -> st.SearchStrategy[Any]:
    fields = {name: _values(f.annotation) for name, f in model.model_fields.items()}
    data = st.fixed_dictionaries(fields).map(lambda values: construct(model, **values))
    return st.tuples(data, _TIMES, st.none() | _TEXT, st.none() | _TEXT).map(
        lambda a: a[0].at(a[1], a[2], a[3])
    )


@pytest.mark.parametrize("model", sorted(_INTEGER_FREE, key=lambda m: m.EVENT), ids=lambda m: m.EVENT)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_an_event_without_integers_is_written_as_orjson_would(model: type[EventData], data: Any) -> None:
    event = data.draw(_events(model))
    assert _to_json(event) == orjson.dumps(event.model_dump(mode="json"))


def test_the_events_without_integers_are_found_by_their_schema() -> None:
    assert {CommandCreated, SessionState, RobotStatus} <= _INTEGER_FREE
    for model in (MessageClassified, CustomerUpdated, AlertRaised):  # ints: top level, in a dict, nested
        assert model not in _INTEGER_FREE
    for model in CATALOGUE.values():
        assert (model in _INTEGER_FREE) is not may_hold_integer(model)


class _Nested(BaseModel):
    n: list[dict[str, int]] | None = None


@pytest.mark.parametrize(
    ("annotation", "may"),
    [(str, False), (float, False), (bool, False), (datetime, False), (str | None, False), (list[str], False),
     (dict[str, str], False), (Literal["a", "b"] | None, False), (typing.Annotated[str, "meta"], False),
     (int, True), (int | None, True), (Literal[1, 2], True), (dict[str, int], True), (list[int | str], True),
     (_Nested, True), (Any, True), (bytes, True), (timedelta, True)],
)  # fmt: skip
def test_may_hold_integer(annotation: Any, may: bool) -> None:
    assert may_hold_integer(annotation) is may


def test_an_integer_beyond_64_bits_in_an_envelope_is_still_refused() -> None:
    """Only the data's schema is known integer-free: a validated envelope's schema_version is searched."""
    event = RobotStatus.make(status="online").at(AT, robot_id="wt_1")
    assert _to_json(event).startswith(b'{"schema_version":%d,' % SCHEMA_VERSION)
    huge = event.model_copy(update={"schema_version": 2**70})
    with pytest.raises(orjson.JSONEncodeError):
        _to_json(huge)


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]),
)
def test_iso_writes_what_isoformat_wrote(naive: datetime, tz: timezone) -> None:
    dt = naive.replace(tzinfo=tz)
    assert iso(dt) == dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    assert (
        iso(dt.replace(microsecond=0)) == dt.astimezone(UTC).replace(microsecond=0).isoformat()[:-6] + ".000Z"
    )
