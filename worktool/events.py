"""The monitor-event catalogue: the typed contract of worktool.monitor (and of replay output).

Every value on the monitor topic is a `MonitorEvent` envelope

    {"schema_version": 1, "event": str, "event_time": ISO-8601 UTC, "session_id": str|null,
     "robot_id": str|null, "data": {...}}

whose `data` is the model registered for its `event` name below. Dashboards, the Postgres projection
(sinks/postgres.py) and tests depend on these names; `worktool schema` writes the JSON Schema of each,
and docs/events.md describes them. Rules for changing this file:

- adding an event, or an optional field to one, is compatible;
- renaming or removing a field, changing its type or meaning, is not: raise SCHEMA_VERSION.

Producers build the data model and call `.at(event_time, session_id, robot_id)`. On the dataflow's hot
path they use `make`/`construct` (no validation: every value comes from already-validated parts); the
schema test validates every event the sample day produces, so a drifting producer still fails CI.

Typed events: the catalogue defines one typed envelope per event (`EVENT_TYPES[name]`, a subclass of
`MonitorEvent` whose `event` is `Literal[name]` and whose `data` is the event's model); `AnyMonitorEvent`
is their union discriminated by `event`. `parse_event` reads JSON through it (an unknown event name is
refused, naming the known ones) and `.at()` builds the typed envelope, so consumers match on the type:

    match ev.data:
        case AlertRaised(alert=alert): ...
        case CommandResult(status=status): ...

Serialised once: `MonitorEvent.to_json()` keeps its bytes, so every sink that writes JSON (Kafka, JSONL)
shares one encoding. An event is not changed after it is emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, Union, get_args, get_origin

import orjson
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, TypeAdapter, create_model, model_validator

from worktool.models import CommandChannel, ReplyProvenance, SenderType, UtcDatetime, to_utc

M = TypeVar("M", bound=BaseModel)

SCHEMA_VERSION = 1

_DEFAULTS: dict[type, tuple[dict[str, Any], int]] = {}  # class -> (plain defaults, number of fields)


def construct(cls: type[M], **values: Any) -> M:
    """An instance of `cls` from trusted values, without validation: the dataflow's hot path builds
    several events per record, and pydantic's model_construct costs more than everything else the rules
    do. Missing fields take their plain defaults (the event models have no default factories)."""
    return construct_from(cls, values)


def construct_from(cls: type[M], values: dict[str, Any]) -> M:
    """`construct` from a dict the caller hands over (not copied when it names every field; not to be
    changed afterwards): saves packing the keywords again on the hot path."""
    known = _DEFAULTS.get(cls)
    if known is None:
        fields = cls.model_fields
        known = _DEFAULTS[cls] = (
            {n: f.default for n, f in fields.items() if not f.is_required()},
            len(fields),
        )
    defaults, count = known
    obj = _new(cls)
    _set_dict(obj, {**defaults, **values} if len(values) < count else values)
    _set_fields_set(obj, set(values))
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


_new = object.__new__
# BaseModel's slots, set through their descriptors (half the cost of object.__setattr__ by name)
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class EventData(BaseModel):
    """Base of every event's `data`. Subclasses set EVENT and are registered in CATALOGUE."""

    model_config = ConfigDict(extra="forbid")
    EVENT: ClassVar[str]

    def at(
        self, event_time: datetime, session_id: str | None = None, robot_id: str | None = None
    ) -> MonitorEvent:
        """This data in its typed envelope (no validation: see the module doc)."""
        obj = _new(EVENT_TYPES[self.EVENT])
        _set_dict(
            obj,
            {
                "schema_version": SCHEMA_VERSION,
                "event": self.EVENT,
                "event_time": event_time,
                "session_id": session_id,
                "robot_id": robot_id,
                "data": self,
            },
        )
        _set_fields_set(obj, _ENVELOPE_FIELDS.copy())
        _set_extra(obj, None)
        _set_private(obj, None)
        _set_wire(obj, None)  # not encoded yet (reading an unset slot costs ~1.5 µs: pydantic's __getattr__)
        return obj

    @classmethod
    def make(cls, **values: Any) -> Self:
        """Unchecked construction for the hot path (see `construct`)."""
        return construct_from(cls, values)

    @classmethod
    def event(
        cls, *, event_time: Any, session_id: str | None = None, robot_id: str | None = None, **fields: Any
    ) -> MonitorEvent:
        """Validated construction, for producers off the hot path."""
        return EVENT_TYPES[cls.EVENT](
            event=cls.EVENT,
            event_time=event_time,
            session_id=session_id,
            robot_id=robot_id,
            data=cls.model_validate(fields),
        )


CATALOGUE: dict[str, type[EventData]] = {}


def _register(cls: type[EventData]) -> type[EventData]:
    if cls.EVENT in CATALOGUE:
        raise ValueError(f"event {cls.EVENT} registered twice")
    CATALOGUE[cls.EVENT] = cls
    return cls


class MonitorEvent(BaseModel):
    """The envelope of every monitor event (its typed forms: `EVENT_TYPES`, `AnyMonitorEvent`)."""

    __slots__ = ("_wire",)  # the JSON bytes, once encoded (not a field: equality ignores it)

    schema_version: int = SCHEMA_VERSION
    event: str
    event_time: UtcDatetime
    session_id: str | None = None
    robot_id: str | None = None
    data: SerializeAsAny[EventData]

    @model_validator(mode="before")
    @classmethod
    def _typed_data(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("data"), dict):
            model = CATALOGUE.get(value.get("event"))  # type: ignore[arg-type]
            if model is None:
                raise ValueError(f"unknown monitor event {value.get('event')!r}")
            value = {**value, "data": model.model_validate(value["data"])}
        return value

    @model_validator(mode="after")
    def _data_matches_event(self) -> MonitorEvent:
        if getattr(type(self.data), "EVENT", None) != self.event:
            raise ValueError(
                f"data of type {type(self.data).__name__} does not belong to event {self.event!r}"
            )
        return self

    def to_json(self) -> bytes:
        """The event's JSON, encoded once and kept: every sink writing this event shares the bytes."""
        try:
            wire: bytes | None = self._wire
        except AttributeError:  # not made by `.at()` (validated, copied, unpickled): no slot value yet
            wire = None
        if wire is None:
            wire = _to_json(self)
            _set_wire(self, wire)
        return wire


_set_wire = MonitorEvent.__dict__["_wire"].__set__


# A run of 19 or more digits: the only place an integer beyond 64 bits (signed or not) can hide. Found
# by mapping every digit to "0" and everything else to " " (two C passes, ~1.4 µs for a 900-byte event;
# a regular expression took 18-21 µs, RE2 5 µs).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def has_long_digits(wire: bytes) -> bool:
    return _LONG_RUN in wire.translate(_DIGITS_ONLY)


def _to_json(event: MonitorEvent) -> bytes:
    # pydantic-core's encoder (twice as fast as orjson over model_dump, the same bytes) unless the
    # bytes hold a long run of digits: then orjson decides, which refuses integers beyond 64 bits that
    # not every consumer of the topic can hold (such an event is dead-lettered by the sink,
    # tests/sinks/test_sink_poison.py); benchmarks/README.md, "Event encoding". An encoder of orjson over
    # the events' own values, types checked in Python, saved only ~0.7 µs of ~4 (measured, not kept).
    # The digit runs are not looked for in an event whose schema holds no integer (`_INTEGER_FREE`): its
    # strings and floats are the same bytes through both encoders, so orjson could only agree.
    wire = event.__pydantic_serializer__.to_json(event)
    if type(event.data) in _INTEGER_FREE and event.schema_version == SCHEMA_VERSION:
        return wire
    if not has_long_digits(wire):
        return wire
    return orjson.dumps(event.model_dump(mode="json"))


# Types whose values JSON never writes as an integer (UtcDatetime is written by `iso`, as a string).
_NEVER_INTEGERS = frozenset({str, float, bool, datetime, NoneType})


def may_hold_integer(annotation: Any) -> bool:
    """Whether a value of this type can put an integer in an event's JSON: any int in it, a Literal of
    ints, or a type this does not know (Any, ...). A float field holds a float: validation makes one of
    an int, and the schema test validates every event the sample day produces."""
    if annotation in _NEVER_INTEGERS:
        return False
    origin = get_origin(annotation)
    if origin is Literal:
        return any(type(value) is int for value in get_args(annotation))
    if origin is Annotated:
        return may_hold_integer(get_args(annotation)[0])
    if origin in (Union, UnionType, list, dict):
        return any(may_hold_integer(arg) for arg in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(may_hold_integer(field.annotation) for field in annotation.model_fields.values())
    return True


def parse_event(raw: bytes | str) -> MonitorEvent:
    """One monitor event from its JSON (the monitor topic, a replay output line), as its typed envelope.
    An unknown event name is refused: a ValidationError naming the event names of the catalogue."""
    return _ANY_EVENT.validate_json(raw)  # type: ignore[no-any-return]


def trusted_event(payload: bytes) -> MonitorEvent:
    """An event from JSON this program wrote of its own events (a sliced replay's desk inputs,
    dataflows/replay.py): the same typed event as `parse_event`, built as the dataflow builds its events
    (`construct`, `.at()`), without validating it again (`parse_event`'s validation was 1/3 of a sliced
    replay's desk; this takes ~1/2 of its time). An event whose fields this does not know how to rebuild,
    or of a name the catalogue does not know, is validated."""
    raw = orjson.loads(payload)
    name = raw.get("event")
    plan = _PLANS.get(name, _UNPLANNED)
    if plan is _UNPLANNED:
        model = CATALOGUE.get(name)  # type: ignore[arg-type]
        plan = _PLANS[name] = None if model is None else _plan_of(model)
    if plan is None:
        return parse_event(payload)
    model, fields = plan
    data = _rebuilt(model, fields, raw["data"])
    return data.at(to_utc(raw["event_time"]), raw["session_id"], raw["robot_id"])


class _NotRebuilt(Exception):
    """A field type `trusted_event` does not rebuild."""


def _plan_of(model: type[BaseModel]) -> tuple[type[BaseModel], list[tuple[str, Callable[[Any], Any]]]] | None:
    try:
        return model, _fields_of(model)
    except _NotRebuilt:
        return None


def _fields_of(model: type[BaseModel]) -> list[tuple[str, Callable[[Any], Any]]]:
    """The fields whose JSON value is not the value validation gives, each with what gives it."""
    out = []
    for name, info in model.model_fields.items():
        convert = _converter(info.annotation, info.metadata)
        if convert is not None:
            out.append((name, convert))
    return out


def _converter(annotation: Any, metadata: Any = ()) -> Callable[[Any], Any] | None:
    """What turns a JSON value of this type into the value validation gives (None: the value itself)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _converter(annotation.__origin__, annotation.__metadata__)
    if origin in (Union, UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            raise _NotRebuilt(annotation)
        inner = _converter(options[0])
        return None if inner is None else (lambda v: None if v is None else inner(v))
    if origin is list:
        inner = _converter(*get_args(annotation))
        return None if inner is None else (lambda v: [inner(x) for x in v])
    if origin is Literal or annotation in (str, bool):
        return None
    if annotation is int:
        return lambda v: v if type(v) is int else int(v)
    if annotation is float:
        return float
    if annotation is datetime and any(getattr(m, "func", None) is to_utc for m in metadata):
        return to_utc  # UtcDatetime
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and origin is None:
        fields = _fields_of(annotation)
        return lambda v: _rebuilt(annotation, fields, v)
    raise _NotRebuilt(annotation)


def _rebuilt(model: type[Any], fields: list[tuple[str, Callable[[Any], Any]]], values: dict[str, Any]) -> Any:
    for name, convert in fields:
        if name in values:
            values[name] = convert(values[name])
    return construct_from(model, values)


# How each event's data is rebuilt from its JSON (None: validated), planned at its first use.
_PLANS: dict[Any, tuple[type[BaseModel], list[tuple[str, Callable[[Any], Any]]]] | None] = {}
_UNPLANNED = object()


def event_type(name: str) -> type[EventData] | None:
    """The data model of an event name, None for a name the catalogue does not know."""
    return CATALOGUE.get(name)


# ---------------------------------------------------------------------------------------------
# Intake and classification


@_register
class MessageClassified(EventData):
    """A message (the first report of it), who sent it and what kind of message it is."""

    EVENT: ClassVar[str] = "message_classified"
    message_id: str
    sender_type: SenderType
    message_type: str | None = Field(description="one of the 14 message types; null for our robots' echoes")
    confidence: float = Field(ge=0, le=1)
    reason: str
    decided_by: Literal["rules", "model", "llm"]
    staff_command: str | None = None
    sentiment: float | None = Field(default=None, ge=-1, le=1)
    need_reply: bool | None = None
    reply_quality: float | None = Field(
        default=None, ge=0, le=1, description="score of a staff or assistant reply to an owner's question"
    )
    reply_quality_source: Literal["rules", "llm"] | None = None
    reply_quality_reason: str | None = None
    satisfaction: float | None = Field(
        default=None, ge=0, le=1, description="the user's rolling satisfaction"
    )
    sender_name: str
    text: str
    raw_text: str
    text_type: int
    content_kind: str
    room_type: int
    is_group: bool
    group_name: str
    group_remark: str
    reply_target: str
    at_me: bool
    mentions: list[str]
    mentioned_robots: list[str] = Field(description="robot ids of our robots @-mentioned in the message")
    is_echo: bool = Field(description="one of our own robots' messages")
    session_message_count: int


@_register
class RobotJoinedSession(EventData):
    """A robot reported a message of this session for the first time: it sits in that group or chat."""

    EVENT: ClassVar[str] = "robot_joined_session"
    group_name: str | None = None
    reply_target: str | None = None


@_register
class RobotStatus(EventData):
    """An online or offline callback."""

    EVENT: ClassVar[str] = "robot_status"
    status: Literal["online", "offline"]


@_register
class CommandCallback(EventData):
    """A command-result, group-QR or accepted record as WorkTool (or our dispatcher) reported it."""

    EVENT: ClassVar[str] = "command_callback"
    kind: Literal["result", "qrcode", "accepted"]
    worktool_message_id: str
    error_code: int
    error_reason: str
    command_type: int | None = None
    group_name: str | None = None
    qr_code: str | None = None


@_register
class AiCall(EventData):
    """One LLM call, with its input and output (the API key never appears)."""

    EVENT: ClassVar[str] = "ai_call"
    call_id: str
    message_id: str | None = None
    operation_type: str
    provider: str | None = None
    model_id: str | None = None
    input: str | None = None
    output: str | None = None
    status: Literal["ok", "error", "timeout", "breaker_open", "invalid"]
    error_message: str | None = None
    latency_ms: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


# ---------------------------------------------------------------------------------------------
# Sessions: staff-active windows, paused replies, handover


SessionStatus = Literal["auto", "staff", "handover"]


@_register
class StaffWindowOpened(EventData):
    """A staff or assistant message opened the session's staff-active window: no automatic reply until
    `until` (moved on by every further staff message)."""

    EVENT: ClassVar[str] = "staff_window_opened"
    until: UtcDatetime
    staff_name: str
    message_id: str


@_register
class StaffWindowClosed(EventData):
    """The staff-active window ended: no staff message for the configured minutes."""

    EVENT: ClassVar[str] = "staff_window_closed"
    opened_at: UtcDatetime


@_register
class SessionState(EventData):
    """The session's reply state after any change (window opened/moved/closed, replies paused or
    resumed, handover, solved). The Postgres projection keeps `sessions` current from it."""

    EVENT: ClassVar[str] = "session_state"
    status: SessionStatus = Field(description="auto: AI may reply; staff: window open; handover: [转人工]")
    ai_paused: bool
    staff_active_until: UtcDatetime | None = None
    change: str = Field(description="what changed: staff_window_opened, staff_window_extended, ...")


# ---------------------------------------------------------------------------------------------
# Staff intervention and alerts


@_register
class InterventionNeeded(EventData):
    """A message that needs a person (the four intervention situations)."""

    EVENT: ClassVar[str] = "intervention_needed"
    message_id: str
    reason: (
        Literal[
            "user_negative_after_staff",
            "user_waiting_too_long",
            "staff_low_reply_quality",
            "user_low_satisfaction",
            "complaint",
        ]
        | str
    )
    user_name: str | None = None


class EscalationStep(BaseModel):
    at: UtcDatetime
    from_level: int = Field(ge=1, le=4)
    to_level: int = Field(ge=1, le=4)
    by: str = Field(description="repeat, or the actor of a manual escalation")


class AlertSnapshot(BaseModel):
    """An alert as it stands after a transition; `version` orders the transitions of one alert."""

    alert_id: str
    alert_type: str
    alert_key: str
    session_id: str | None = None
    user_name: str | None = None
    group_name: str | None = None
    robot_id: str | None = None
    level: int = Field(ge=1, le=4)
    status: Literal["open", "escalated", "cancelled", "resolved"]
    escalation_count: int = Field(ge=0)
    escalation_history: list[EscalationStep]
    cancel_reason: str | None = None
    cancelled_at: UtcDatetime | None = None
    cancelled_by: str | None = None
    raised_at: UtcDatetime
    last_triggered_at: UtcDatetime
    trigger_count: int = Field(ge=1)
    message_id: str | None = None
    message_content: str | None = None
    parent_alert_id: str | None = None
    notified_at: UtcDatetime | None = None
    version: int = Field(ge=1)


CancelReason = Literal["staff_intervened", "user_satisfied", "problem_solved", "expired", "manual"]


@_register
class AlertRaised(EventData):
    EVENT: ClassVar[str] = "alert_raised"
    alert_id: str
    alert_type: str
    level: int = Field(ge=1, le=4)
    alert: AlertSnapshot


@_register
class AlertEscalated(EventData):
    EVENT: ClassVar[str] = "alert_escalated"
    alert_id: str
    from_level: int = Field(ge=1, le=4)
    to_level: int = Field(ge=1, le=4)
    alert: AlertSnapshot


@_register
class AlertRetriggered(EventData):
    """The same alert key triggered again outside the escalation window: re-notified at the same level
    (unless a notification went out less than the configured interval ago)."""

    EVENT: ClassVar[str] = "alert_retriggered"
    alert_id: str
    level: int = Field(ge=1, le=4)
    notified: bool
    alert: AlertSnapshot


@_register
class AlertCancelled(EventData):
    EVENT: ClassVar[str] = "alert_cancelled"
    alert_id: str
    reason: CancelReason
    alert: AlertSnapshot


# ---------------------------------------------------------------------------------------------
# Replies and commands


@_register
class ReplyScheduled(EventData):
    EVENT: ClassVar[str] = "reply_scheduled"
    message_id: str
    robot_id: str
    target: str
    delay_s: float = Field(ge=0)
    due_time: UtcDatetime
    persona: str | None = None  # the persona the reply was written with
    template_id: str | None = None  # its template: a catalogue id, or config:<message type>


@_register
class CommandCreated(EventData):
    """A command was written to worktool.commands (a notification or a reply): `pending` until the
    dispatcher sends it."""

    EVENT: ClassVar[str] = "command_created"
    command_id: str
    channel: CommandChannel
    robot_id: str | None
    target: str
    content: str
    at_list: list[str]
    due_time: UtcDatetime
    cause_event: str
    cause_id: str | None = None
    persona: str | None = None  # a reply's or notice's persona (null for alert notifications)
    template_id: str | None = None  # its template: a catalogue id, or config:<kind>
    reply: ReplyProvenance | None = None  # an LLM-written reply: model, persona, passages


@_register
class ReplySkipped(EventData):
    """A user message that would get an automatic reply got none, and why (staff window open, replies
    paused, no reply robot in the group, ...)."""

    EVENT: ClassVar[str] = "reply_skipped"
    message_id: str
    reason: str


@_register
class ReplyWithdrawn(EventData):
    """A scheduled reply not sent yet was withdrawn (staff stepped in, replies paused)."""

    EVENT: ClassVar[str] = "reply_withdrawn"
    message_id: str
    reason: str


@_register
class CommandSent(EventData):
    """The dispatcher's request carrying the command was accepted (WorkTool queued it)."""

    EVENT: ClassVar[str] = "command_sent"
    command_id: str
    robot_id: str | None
    worktool_message_id: str | None = None


@_register
class CommandResult(EventData):
    """The command's end: completed (result errorCode 0), failed (another errorCode, or the submission
    failed), or unknown (no result after the timeout and its look-ups: check it by hand)."""

    EVENT: ClassVar[str] = "command_result"
    command_id: str
    status: Literal["completed", "failed", "unknown"]
    error_code: int | None = None
    error_reason: str | None = None


@_register
class CommandTimeout(EventData):
    """No result callback in time: `lookups` is how many times it was looked up again since."""

    EVENT: ClassVar[str] = "command_timeout"
    command_id: str
    lookups: int = 0


@_register
class RobotHealth(EventData):
    """A robot's health score after a send outcome or a status change."""

    EVENT: ClassVar[str] = "robot_health"
    score: float = Field(ge=0, le=100)
    band: Literal["healthy", "warning", "critical"]
    online: bool
    send_failures: int = Field(ge=0)
    consecutive_failures: int = Field(ge=0)
    last_failure_at: UtcDatetime | None = None


# ---------------------------------------------------------------------------------------------
# After-sales tasks


@_register
class TaskCreated(EventData):
    EVENT: ClassVar[str] = "task_created"
    task_id: str
    task_type: str
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    user_name: str | None = None
    group_name: str | None = None
    message_id: str | None = None
    description: str | None = None


@_register
class TaskStatus(EventData):
    """An after-sales task changed status (completed by [已解决] or the user confirming it is solved)."""

    EVENT: ClassVar[str] = "task_status"
    task_id: str
    status: Literal["pending", "assigned", "waiting_user", "in_progress", "completed", "cancelled"]
    reason: str | None = None  # why (a completion's or cancellation's reason, what moved it)
    by: str | None = None  # who: a staff member's name, "desk", "system", a console user


@_register
class TaskUpdated(EventData):
    """An owner asked again for what their open task is about (one open task per session, owner and type):
    the task is updated, not doubled. Counted as a need in the daily report's funnel."""

    EVENT: ClassVar[str] = "task_updated"
    task_id: str
    message_id: str | None = None
    description: str | None = None


@_register
class TaskAssigned(EventData):
    """The desk gave a task to a staff member (operators/desk.py): automatically, or by hand."""

    EVENT: ClassVar[str] = "task_assigned"
    task_id: str
    assignee: str
    auto: bool  # chosen by the desk's rule (False: assigned through the console)
    previous: str | None = None  # the assignee before (a re-assignment)
    open_tasks: int  # the assignee's open tasks, this one included
    waited_minutes: float = 0  # how long the task waited for someone available
    by: str | None = None  # the console user of a manual assignment


@_register
class TaskReminder(EventData):
    """An owner has not answered a staff @ about their open task for `after_sales.reminder_minutes`: the
    assignee (or, unassigned, the staff group) is reminded."""

    EVENT: ClassVar[str] = "task_reminder"
    task_id: str
    user_name: str | None = None
    minutes: float


class StaffDay(BaseModel):
    """One desk member's day in the daily report."""

    name: str
    assigned: int = 0  # tasks given to them that day
    completed: int = 0  # tasks they held that were completed that day
    open_at_end: int = 0  # tasks they held at 24:00
    reminders: int = 0  # owners silent after their @ (task_reminder)
    not_followed_up: int = 0  # task_not_followed_up alerts on their tasks
    unfinished: int = 0  # task_unfinished alerts on their tasks


class AlertCount(BaseModel):
    alert_type: str
    level: int  # the level it was raised at
    raised: int
    escalated: int = 0  # of those, escalated later that day


@_register
class DailyReport(EventData):
    """The after-sales day (docs/rules.md §7), at 24:00 in the configured time zone, in event time: made
    by the desk (operators/desk.py) over every shard's tasks and alerts; also a row of
    after_sales_daily_reports and a WeCom summary through the notify robot (and Feishu, if configured)."""

    EVENT: ClassVar[str] = "daily_report"
    report_date: str  # YYYY-MM-DD, local
    timezone: str
    tasks_opened: int
    tasks_completed: int  # completed that day, whenever opened
    tasks_cancelled: int
    opened_and_completed: int  # of the tasks opened that day, completed by 24:00
    completion_rate: float | None  # opened_and_completed / tasks_opened (None: no task opened)
    avg_handling_minutes: float | None  # of the tasks completed that day, opening to completion
    p90_handling_minutes: float | None
    sla_attained: float | None  # of the tasks completed that day, the share done within their type's target
    open_at_end: int
    overdue_at_end: int  # open at 24:00 past their type's target
    cooperation: dict[str, int]  # owners' answers to staff @s: responded, refused, timeout (reminded)
    staff: list[StaffDay]
    alerts: list[AlertCount]
    funnel: dict[str, int]  # needs (requests, repeats included) -> opened -> assigned -> completed
    summary: str  # the text sent to WeCom


@_register
class StaffStatus(EventData):
    """A desk member's availability changed (`PUT /api/staff/{name}/status`)."""

    EVENT: ClassVar[str] = "staff_status"
    name: str
    status: Literal["online", "busy", "offline"]
    by: str | None = None


@_register
class UserResponse(EventData):
    EVENT: ClassVar[str] = "user_response"
    task_id: str
    status: Literal["responded", "refused", "timeout"]


class OpenTask(BaseModel):
    task_id: str
    task_type: str
    opened_at: UtcDatetime


@_register
class CustomerUpdated(EventData):
    """An owner's profile as it now stands (operators/profiles.py; docs/rules.md §7.6): at most one per
    owner per `after_sales.profiles.update_minutes` of event time, the latest state when that interval
    ends. The owner is `user_name` within the envelope's session."""

    EVENT: ClassVar[str] = "customer_updated"
    user_name: str
    group_name: str | None = None
    first_seen_at: UtcDatetime
    last_message_at: UtcDatetime
    message_count: int = Field(ge=0)
    messages: dict[str, int]  # by message type
    requirements: dict[str, int]  # the funnel: needs -> opened -> completed (and cancelled)
    open_tasks: list[OpenTask]
    alerts: dict[str, int]  # raised, by alert type
    open_alerts: int = Field(ge=0)
    satisfaction: float | None = Field(default=None, ge=0, le=1)
    satisfaction_trend: Literal["up", "down", "flat"] | None = None
    cooperation: dict[str, int]  # answers to staff @s: responded, refused, timeout
    cooperation_level: Literal["cooperative", "partial", "uncooperative", "unknown"]
    responses: int = Field(ge=0)  # response times measured (the latest 20 are averaged)
    avg_response_minutes: float | None = None  # how long the owner waited for an answer
    waiting_since: UtcDatetime | None = None  # their message no one has answered yet
    health_score: int = Field(ge=0, le=100)
    health_band: Literal["healthy", "watch", "at_risk"]


# ---------------------------------------------------------------------------------------------
# The pipeline itself


@_register
class PipelineGap(EventData):
    """Records a gateway acknowledged that the dataflow has not processed (operators/gaps.py): numbers
    `first_seq`..`last_seq` of gateway `gateway` were still partly missing a grace period after a later
    number arrived (status open); a late arrival corrects the count (corrected), the last one closes it
    (closed). `gap_id` is the same for every event of one hole."""

    EVENT: ClassVar[str] = "pipeline_gap"
    gap_id: str
    gateway: str
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)
    missing: int = Field(ge=0)
    arrived: int = Field(ge=0)
    status: Literal["open", "corrected", "closed"]


# ---------------------------------------------------------------------------------------------
# The typed envelopes and their union, derived from the catalogue (the single contract).

# Copied per event (a set copy is cheaper than a set from a frozenset).
_ENVELOPE_FIELDS = {"schema_version", "event", "event_time", "session_id", "robot_id", "data"}

EVENT_TYPES: dict[str, type[MonitorEvent]] = {
    name: create_model(
        f"{model.__name__}Event",
        __base__=MonitorEvent,
        __doc__=f"The `{name}` monitor event: its data is a `{model.__name__}`.",
        event=(Literal[name], ...),  # type: ignore[valid-type]
        data=(model, ...),
    )
    for name, model in CATALOGUE.items()
}
"""Event name -> its typed envelope (a `MonitorEvent` with `data` of the event's model)."""
# Module attributes under their own names, so that pickle finds them: an event crosses processes in a
# cluster (the desk step's inputs come from every worker's shards) and sits in the desk's snapshot.
for _envelope in EVENT_TYPES.values():
    _envelope.__module__ = __name__
    globals()[_envelope.__name__] = _envelope

AnyMonitorEvent = Annotated[Union[tuple(EVENT_TYPES.values())], Field(discriminator="event")]  # type: ignore[valid-type]  # noqa: UP007
"""Every monitor event, discriminated by its `event` name."""

AnyEventData = Union[tuple(CATALOGUE.values())]  # type: ignore[valid-type]  # noqa: UP007
"""The `data` of any monitor event: match on it (`case AlertRaised(...)`)."""

_ANY_EVENT: TypeAdapter[MonitorEvent] = TypeAdapter(AnyMonitorEvent, config=ConfigDict(title="MonitorEvent"))

# The events whose data holds no integer by its schema (the envelope's only one is schema_version): their
# bytes are not searched for long runs of digits (`_to_json`): ~45 % of the search, ~0.8 % of a replay.
_INTEGER_FREE: frozenset[type[EventData]] = frozenset(
    model for model in CATALOGUE.values() if not may_hold_integer(model)
)


def envelope_schema(model: type[EventData]) -> dict[str, Any]:
    """JSON Schema of one event: the envelope with `event` fixed and `data` of `model`."""
    typed = create_model(
        f"{model.__name__}Event",
        __base__=BaseModel,
        schema_version=(int, SCHEMA_VERSION),
        event=(Literal[model.EVENT], ...),  # type: ignore[valid-type]
        event_time=(UtcDatetime, ...),
        session_id=(str | None, None),
        robot_id=(str | None, None),
        data=(model, ...),
    )
    schema = typed.model_json_schema(mode="serialization")
    schema["description"] = (model.__doc__ or "").strip() or f"The {model.EVENT} monitor event."
    return schema


__all__ = [
    "CATALOGUE",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "AnyEventData",
    "AnyMonitorEvent",
    "EventData",
    "MonitorEvent",
    "envelope_schema",
    "event_type",
    "parse_event",
]
