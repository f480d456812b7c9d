"""The fast event encoder (worktool/encoding.py) writes exactly what pydantic-core writes, or leaves the
event to pydantic: for every event of the catalogue, with generated values of every field (and of the
wrong types), the bytes, the error and the warnings are those of the careful path."""

from __future__ import annotations

import enum
import math
import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, computed_field, field_serializer

from worktool import encoding
from worktool.events import (
    _ENCODERS,
    CATALOGUE,
    EVENT_TYPES,
    CommandCallback,
    MessageClassified,
    MonitorEvent,
    RobotStatus,
    TaskAssigned,
    _careful_json,
    _to_json,
    construct_from,
)
from worktool.models import UtcDatetime

AT = datetime(2026, 12, 3, 4, 5, 6, 789123, tzinfo=UTC)


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


# Values of other types than a field's: the fast encoder must leave them to pydantic (whose bytes can
# differ: an int in a float field is written 1.0, a bool in an int field 1) or write the same bytes.
WILD = st.sampled_from(
    [None, 0, 1, True, False, 2.5, "x", "", [], ["a", 1], {}, {"k": 1}, {1: 2}, ("a",), {"a"}, b"x",
     Colour.RED, Level.ONE, AT, AT.date(), timedelta(seconds=1), datetime(2026, 1, 2, 3, 4, 5)]
)  # fmt: skip
FLOATS = st.one_of(
    st.floats(),
    st.sampled_from(
        [1e16, 1e15, 0.1, -0.0, 0.0, math.nan, math.inf, -math.inf, 1e-7, 5e-324, 1.7976931348623157e308]
    ),
    st.integers(-(2**70), 2**70),  # an int in a float field: pydantic writes it as a float
)
INTS = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([2**64, -(2**63) - 1, 10**20, -(10**30)]),  # beyond 64 bits: refused by orjson
)
TEXT = st.one_of(
    st.text(), st.sampled_from(["", "订单号 12345678901234567890123", '\x00\x1f\x7f\u2028😀\\"/'])
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)), None])
TIMES = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30)),
    ZONES,
)


def values(node: Any, wild: bool) -> st.SearchStrategy[Any]:
    """Values for a field of `node` (encoding's view of its schema); some of another type if `wild`."""
    strategy = _values(node, wild)
    return st.one_of(strategy, WILD) if wild else strategy


def _values(node: Any, wild: bool) -> st.SearchStrategy[Any]:
    if isinstance(node, str):
        return {"str": TEXT, "int": INTS, "float": FLOATS, "bool": st.booleans(), "iso": TIMES}[node]
    kind = node[0]
    if kind == "nullable":
        return st.one_of(st.none(), values(node[1], wild))
    if kind == "list":
        return st.lists(values(node[1], wild), max_size=3)
    if kind == "dict":
        return st.dictionaries(TEXT, values(node[1], wild), max_size=3)
    return model_values(node[1], node[2], wild)


def model_values(cls: type[BaseModel], fields: dict[str, Any], wild: bool) -> st.SearchStrategy[Any]:
    """Instances made as the hot path makes them (`construct_from`: defaults first, then the given
    fields in the order given), with optional fields left out at random."""
    required = [n for n, f in cls.model_fields.items() if f.is_required() or f.default_factory is not None]

    @st.composite
    def build(draw: st.DrawFn) -> BaseModel:
        names = draw(st.permutations(list(fields)))
        given_ = [n for n in names if n in required or draw(st.booleans())]
        return construct_from(cls, {n: draw(values(fields[n], wild)) for n in given_})

    return build()


def event_strategy(name: str, wild: bool) -> st.SearchStrategy[MonitorEvent]:
    model = CATALOGUE[name]
    node = encoding._node(model.__pydantic_core_schema__, {})
    return st.builds(
        lambda data, at, session, robot: data.at(at, session, robot),
        model_values(model, node[2], wild),
        TIMES,
        st.one_of(st.none(), TEXT),
        st.one_of(st.none(), TEXT),
    )


def outcome(encode: Any, event: MonitorEvent) -> tuple[Any, ...]:
    """What encoding the event gives: its bytes or its error, and the warnings raised meanwhile."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: Any = encode(event)
        except Exception as e:
            result = (type(e), str(e))
    return result, [str(w.message) for w in caught]


def test_every_event_of_the_catalogue_has_a_fast_encoder() -> None:
    for name, envelope in EVENT_TYPES.items():
        assert encoding.compile_encoder(envelope) is not None, name


@pytest.mark.parametrize("name", sorted(CATALOGUE))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_encoder_writes_pydantics_bytes(name: str, data: st.DataObject) -> None:
    """Values of the fields' own types: the fast encoder takes them (no fallback), and orjson writes
    pydantic's bytes, or refuses what pydantic's path refuses too (an integer beyond 64 bits, ...)."""
    event = data.draw(event_strategy(name, wild=False))
    plain = _ENCODERS.setdefault(type(event), encoding.compile_encoder(type(event)))
    assert plain is not None
    plain(event)  # no Unsupported: every value is of its field's type
    assert outcome(_to_json, event) == outcome(_careful_json, event)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_values_of_other_types_give_the_same_bytes_errors_and_warnings(
    name: str, data: st.DataObject
) -> None:
    event = data.draw(event_strategy(name, wild=True))
    assert outcome(_to_json, event) == outcome(_careful_json, event)


def test_edge_values_are_written_as_pydantic_writes_them() -> None:
    def task(**fields: Any) -> MonitorEvent:
        return TaskAssigned.make(
            **{"task_id": "t", "assignee": "a", "auto": True, "open_tasks": 1, **fields}
        ).at(AT)

    cases = [
        task(),  # waited_minutes defaults to the int 0: pydantic writes 0.0
        task(waited_minutes=3),
        task(waited_minutes=2**60),
        task(waited_minutes=True),  # a bool in a float field: 1.0 by pydantic, with a warning
        task(open_tasks=True),  # a bool in an int field: 1 by pydantic
        task(waited_minutes=math.nan),
        task(waited_minutes=1e16),
        task(waited_minutes=-0.0),
        task(by=Colour.RED),
        task(previous="a\ud800b"),  # a lone surrogate: pydantic refuses it
        CommandCallback.make(kind="result", worktool_message_id="w", error_code=10**20, error_reason="").at(
            AT
        ),
        CommandCallback.make(
            kind="result", worktool_message_id="w", error_code=2**64 - 1, error_reason=""
        ).at(AT),
        CommandCallback.make(
            kind="result", worktool_message_id="w", error_code=-(2**63) - 1, error_reason=""
        ).at(AT),
        RobotStatus.make(status=Colour.RED).at(AT),
        RobotStatus.make(status="online").at(datetime(2026, 1, 2, 3, 4, 5)),  # naive: as `iso` reads it
        RobotStatus.make(status="online").at("2026-01-02"),  # type: ignore[arg-type]
        RobotStatus.make(status="online", extra=1).at(AT),  # an extra key: pydantic leaves it out
    ]
    for event in cases:
        assert outcome(_to_json, event) == outcome(_careful_json, event)
    assert _to_json(cases[0]).endswith(
        b'"waited_minutes":0.0,"by":null,"task_id":"t","assignee":"a","auto":true,"open_tasks":1}}'
    )
    with pytest.raises(orjson.JSONEncodeError, match="Integer exceeds 64-bit range"):
        _to_json(cases[10])  # dead-lettered by the Kafka sink (tests/sinks/test_sink_poison.py)


def test_a_missing_field_is_left_to_pydantic() -> None:
    event = RobotStatus.make(status="online").at(AT)
    del event.data.__dict__["status"]
    assert outcome(_to_json, event) == outcome(_careful_json, event)
    assert _to_json(event).endswith(b'"data":{}}')


def test_validated_and_parsed_events_are_written_alike() -> None:
    event = MessageClassified.event(
        event_time="2026-12-03T12:05:06.789+08:00",
        session_id="s",
        message_id="m",
        sender_type="user",
        message_type=None,
        confidence=1,
        reason="r",
        decided_by="rules",
        sender_name="甲",
        text="t",
        raw_text="t",
        text_type=1,
        content_kind="text",
        room_type=1,
        is_group=True,
        group_name="g",
        group_remark="",
        reply_target="g",
        at_me=False,
        mentions=["乙"],
        mentioned_robots=[],
        is_echo=False,
        session_message_count=1,
    )
    assert _to_json(event) == _careful_json(event)
    assert b'"confidence":1.0' in event.to_json()


class Aliased(BaseModel):
    a: str = Field(serialization_alias="b")


class Excluded(BaseModel):
    a: str = Field(exclude=True)


class Serialised(BaseModel):
    a: str

    @field_serializer("a")
    def _a(self, value: str) -> str:
        return value.upper()


class Computed(BaseModel):
    a: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def b(self) -> str:
        return self.a


class Extra(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: str


class NaiveTime(BaseModel):
    a: datetime


class InfNan(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")
    a: float


class AnyData(BaseModel):
    data: SerializeAsAny[BaseModel]


class Mixed(BaseModel):
    a: int | str


@pytest.mark.parametrize(
    "model", [Aliased, Excluded, Serialised, Computed, Extra, NaiveTime, InfNan, AnyData, Mixed]
)
def test_models_beyond_the_fast_encoder_have_none(model: type[BaseModel]) -> None:
    assert encoding.compile_encoder(model) is None


def test_the_untyped_envelope_is_left_to_pydantic() -> None:
    assert encoding.compile_encoder(MonitorEvent) is None  # data: SerializeAsAny[EventData]


def test_models_it_knows_have_one() -> None:
    class Plain(BaseModel):
        a: str
        b: list[dict[str, float]] | None = None
        t: UtcDatetime

    encode = encoding.compile_encoder(Plain)
    assert encode is not None
    value = Plain(a="x", b=[{"k": 1.5}], t=AT)
    assert orjson.dumps(encode(value)) == value.__pydantic_serializer__.to_json(value)
