"""Boundary models: each record that crosses a process or topic boundary has exactly one model here.

- WorkTool callback bodies (what the gateway validates),
- RawRecord (value on worktool.raw and one line of a JSONL archive),
- ControlRecord (value on worktool.control, also a line of an archive),
- CommandRecord (value on worktool.commands),
- Message (the canonical parsed message inside the dataflow),
- Classification (who spoke and what kind of message it is),
- DlqRecord (value on worktool.dlq).

The monitor events (worktool.monitor) have their own catalogue: worktool/events.py.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from worktool.settings import RecordLimits

# ---------------------------------------------------------------------------------------------
# Time: always timezone-aware UTC, serialised as ISO-8601 with millisecond precision and "Z".


def to_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise ValueError("expected an ISO-8601 datetime")
    if value.tzinfo is None:
        raise ValueError("datetime must carry a UTC offset")
    return value.astimezone(UTC)


_ISO_SEEN: dict[datetime, str] = {}  # equal instants give equal text, whatever their time zone
_ISO_SEEN_MAX = 1 << 16


def iso(dt: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and "Z" (the contract's format). Called for every datetime of
    every event encoded, and the events of one record share their times: the text of the latest ones
    is kept (a lookup costs ~0.05 µs, the formatting ~0.8 µs). Formatted with % (isoformat with its
    timespec keyword, then cut and joined, took ~1.2 µs; a sixth of the datetimes of a replay are new,
    and formatting them was ~0.5 % of its CPU)."""
    text = _ISO_SEEN.get(dt)
    if text is None:
        utc = dt if dt.tzinfo is UTC else dt.astimezone(UTC)
        text = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (an f-string's specs cost ~1.6x)
            utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond // 1000
        )  # fmt: skip
        if len(_ISO_SEEN) >= _ISO_SEEN_MAX:
            _ISO_SEEN.clear()
        _ISO_SEEN[dt] = text
    return text


UtcDatetime = Annotated[datetime, BeforeValidator(to_utc), PlainSerializer(iso, return_type=str)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class JsonRecord(BaseModel):
    """A record that crosses a topic boundary: serialised with orjson, times as ISO-8601 "Z"."""

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def summarize_errors(e: ValidationError, limit: int = 5) -> str:
    """`loc: msg; loc: msg` of a pydantic error, short enough for a log line or a DLQ reason."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in e.errors()[:limit]
    )


# ---------------------------------------------------------------------------------------------
# WorkTool's loose types (docs/platform.md §1): atMe may be the string "false", roomType a string.
#
# What every later stage can hold is decided here, once, so that the gateway refuses what the dataflow,
# Kafka or PostgreSQL would refuse later:
# - every numeric field of a callback declares where it is stored (`StoredIn`: PostgreSQL columns and
#   their type, or JSON only), and its accepted range is derived from that type (`stored_int`), narrowed
#   only by WorkTool's own domain (textType >= 0, roomType 1..4). A value outside is refused, not
#   clamped. tests/infra/test_numeric_limits.py checks every declaration against the migrated schema
#   (information_schema), so a new field or a changed column cannot drift apart. The table is in
#   docs/platform.md, "Numeric limits". Free-form text fields take a number as its decimal text;
# - NUL, which PostgreSQL text cannot store, is replaced by U+FFFD in every string field of the callback
#   models. The raw record keeps the body as received (the archive is the truth); the cleaning happens
#   whenever a body is parsed into these models, so the live flow, a replay and every sink see the same
#   text and the same fingerprints.

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", "", "null", "none"}


def _loose_bool(value: Any) -> Any:
    if value is None:
        return False
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return value


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SMALLINT_MAX = 2**15 - 1


@dataclass(frozen=True, slots=True)
class SqlInt:
    """A PostgreSQL integer type and the values it holds."""

    name: str  # as information_schema.columns.data_type spells it
    min: int
    max: int


SMALLINT = SqlInt("smallint", -(2**15), SMALLINT_MAX)
INTEGER = SqlInt("integer", -(2**31), 2**31 - 1)
BIGINT = SqlInt("bigint", INT64_MIN, INT64_MAX)
# JSON only (raw record, monitor events, jsonb): orjson writes integers up to 64 bits, so int64.
JSON_INT = SqlInt("bigint", INT64_MIN, INT64_MAX)


@dataclass(frozen=True, slots=True)
class StoredIn:
    """Where a numeric callback field ends up: PostgreSQL `columns` ("table.column") of type `sql`,
    or no column at all (kept in JSON only: the raw record, monitor events)."""

    sql: SqlInt | None  # None: a float kept in JSON only (finite: allow_inf_nan=False)
    columns: tuple[str, ...] = ()


def stored_int(sql: SqlInt, *columns: str, ge: int | None = None, le: int | None = None) -> Any:
    """The type of an integer callback field stored as `sql` in `columns` (none: JSON only). It accepts
    exactly what the column holds, narrowed by `ge`/`le` where WorkTool's codes need less."""
    low = sql.min if ge is None else max(sql.min, ge)
    high = sql.max if le is None else min(sql.max, le)
    return Annotated[int, BeforeValidator(_loose_int), Field(ge=low, le=high), StoredIn(sql, columns)]


_MAX_INT_DIGITS = 20  # int64 has 19; more is out of range without parsing (and int() caps at 4300)
NUL, REPLACEMENT = "\x00", "\ufffd"


def _loose_int(value: Any) -> Any:
    if isinstance(value, str):
        v = value.strip()
        digits = v.removeprefix("-")
        if digits.isdigit() and digits.isascii():
            if len(digits) > _MAX_INT_DIGITS:
                raise ValueError(f"integer out of range: {v[:24]}...")
            return int(v)
        raise ValueError(f"not an integer: {value[:40]!r}")
    if isinstance(value, bool):
        raise ValueError("not an integer: bool")
    return value


def clean_text(value: str) -> str:
    """Text every sink can store: NUL (refused by PostgreSQL) becomes U+FFFD."""
    return value.replace(NUL, REPLACEMENT) if NUL in value else value


def _clean_str(value: Any) -> Any:
    return clean_text(value) if isinstance(value, str) else value


def _loose_str(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _clean_str(value)


def _loose_id(value: Any) -> Any:
    # An id must stay exact: a JSON number beyond 64 bits reaches us as a float (orjson), already rounded.
    if isinstance(value, float):
        raise ValueError("an id must be a string or an integer, not a floating-point number")
    return _loose_str(value)


LooseBool = Annotated[bool, BeforeValidator(_loose_bool)]
LooseInt = stored_int(JSON_INT)  # an integer kept in JSON only
LooseStr = Annotated[str, BeforeValidator(_loose_str)]
LooseId = Annotated[str, BeforeValidator(_loose_id)]
CleanStr = Annotated[str, BeforeValidator(_clean_str)]
# WorkTool's codes are 0..15; the column is a smallint.
TextTypeCode = stored_int(SMALLINT, "session_messages.text_type", ge=0)
# WorkTool's codes (0, 201102, ...) and ours (the dispatcher's -2, HTTP statuses) fit the integer column
# with room to spare; a code beyond it is no code WorkTool sends, so it is refused at the gateway (4xx and
# the DLQ) instead of being acknowledged and then dead-lettered by the Postgres sink.
ErrorCode = stored_int(INTEGER, "robot_commands.error_code")
TimeCost = Annotated[float, Field(allow_inf_nan=False), StoredIn(None)]

RoomType = Literal[1, 2, 3, 4]  # 1 external group, 2 external contact, 3 internal group, 4 internal contact
RoomTypeCode = Annotated[
    RoomType,
    BeforeValidator(_loose_int),
    StoredIn(SMALLINT, ("sessions.room_type", "session_messages.room_type")),
]
GROUP_ROOM_TYPES = (1, 3)
INTERNAL_ROOM_TYPES = (3, 4)

# textType codes (docs/platform.md §1)
TEXT_TYPES: dict[int, str] = {
    0: "unknown",
    1: "text",
    2: "image",
    3: "voice",
    5: "video",
    7: "mini_program",
    8: "link",
    9: "file",
    13: "chat_record",
    15: "quoted_text",
}


class MessageCallback(BaseModel):
    """Body of the message callback (type 11). Unknown keys are kept (extra="allow")."""

    model_config = ConfigDict(extra="allow")

    spoken: LooseStr = ""
    rawSpoken: LooseStr = ""
    receivedName: Annotated[CleanStr, Field(min_length=1)]
    groupName: LooseStr = ""
    groupRemark: LooseStr = ""
    roomType: RoomTypeCode = 1
    atMe: LooseBool = False
    textType: TextTypeCode = 1
    fileBase64: str | None = None

    @model_validator(mode="after")
    def _group_has_a_name(self) -> MessageCallback:
        # Its session id is the group's name: without one the message belongs to no session.
        if self.roomType in GROUP_ROOM_TYPES and not (self.groupName or self.groupRemark):
            raise ValueError("group message without groupName or groupRemark")
        return self


class ResultCallback(BaseModel):
    """Body of the command-result (type 1) and group-QR (type 0) callbacks."""

    model_config = ConfigDict(extra="allow")

    messageId: LooseId = ""
    errorCode: ErrorCode = 0
    errorReason: LooseStr = ""
    runTime: LooseInt | None = None  # ms epoch; robot_commands.executed_at has no writer yet
    timeCost: TimeCost | None = None
    type: LooseInt | None = None  # command_callback.command_type (monitor topic)
    rawMsg: LooseStr | None = None
    successList: list[str] | None = None
    failList: list[str] | None = None
    groupName: LooseStr | None = None
    qrCode: LooseStr | None = None


# How a command is sent: WeCom through a robot (WorkTool), a phone call or an SMS through their webhooks,
# a Feishu custom bot (its webhook). robot_commands.channel lists the same values (migration 0009).
CommandChannel = Literal["wecom", "phone", "sms", "feishu"]


class AcceptedBody(BaseModel):
    """Body of an `accepted` raw record, written by our dispatcher: what WorkTool (or a phone/SMS
    webhook, or Feishu) answered to one send request, so that a replay sees everything that came from outside."""

    model_config = ConfigDict(extra="allow")

    messageId: LooseStr = ""  # WorkTool's id of the request, carried by its result callbacks; "" if refused
    commandIds: list[str] = Field(min_length=1)  # our commands in the request, in list order
    errorCode: ErrorCode = 0  # 0: accepted; anything else: the submission failed after its retries
    errorReason: LooseStr = ""
    channel: CommandChannel = "wecom"


# The webhooks WorkTool calls; "accepted" is written by our own dispatcher (WorkTool's answer to a send).
WEBHOOK_KINDS = ("message", "result", "qrcode", "online", "offline")
RawKind = Literal["message", "result", "qrcode", "online", "offline", "accepted"]
# Kinds whose body is a ResultCallback ("accepted" has its own AcceptedBody).
RESULT_KINDS = ("result", "qrcode")
# Body fields that name a person or a group: bounded by RecordLimits.max_name_chars.
NAME_FIELDS: dict[str, tuple[str, ...]] = {
    "message": ("receivedName", "groupName", "groupRemark"),
    "result": ("groupName",),
    "qrcode": ("groupName",),
}


def json_depth(value: Any) -> int:
    """Nesting depth of decoded JSON: a scalar is 0, `{}` and `[1]` are 1. Iterative: the input may be
    nested a thousand levels deep."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest


def has_control_chars(value: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def robot_id_problem(robot_id: str, limits: RecordLimits) -> str | None:
    """Why a robotId cannot be used (it becomes a key in Kafka and PostgreSQL), or None."""
    if len(robot_id) > limits.max_id_chars:
        return f"robotId of {len(robot_id)} characters exceeds the limit of {limits.max_id_chars}"
    if has_control_chars(robot_id):
        return "robotId contains control characters"
    return None


def body_limit_problems(kind: str, body: dict[str, Any], limits: RecordLimits) -> list[str]:
    """The limits of RecordLimits a decoded callback body breaks (names too long, nested too deep)."""
    problems = []
    for name in NAME_FIELDS.get(kind, ()):
        value = body.get(name)
        if isinstance(value, str) and len(value) > limits.max_name_chars:
            problems.append(f"{name}: {len(value)} characters exceed the limit of {limits.max_name_chars}")
    depth = json_depth(body)
    if depth > limits.max_json_depth:
        problems.append(f"body nested {depth} levels deep exceeds the limit of {limits.max_json_depth}")
    return problems


class GatewaySeq(BaseModel):
    """Which acknowledged record of which gateway this is (docs/architecture.md, "Loss detection").
    `gw` is the gateway process's boot id (new on every start), `n` counts the records it stamped from 1;
    `void` lists earlier numbers of the same boot that were never acknowledged (answered 503), so the
    dataflow does not wait for them."""

    gw: Annotated[str, Field(min_length=1, max_length=64)]
    n: Annotated[int, Field(ge=1, le=2**62)]
    void: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(default_factory=list, max_length=1000)


class RawRecord(JsonRecord):
    """Value on worktool.raw and one line of a JSONL archive. `seq` is stamped by the gateway (optional:
    records of the dispatcher and of older archives have none)."""

    kind: RawKind
    robot_id: Annotated[str, Field(min_length=1)]
    received_at: UtcDatetime
    body: dict[str, Any]
    seq: GatewaySeq | None = None

    def to_json(self) -> bytes:
        # Without a sequence the record is byte for byte what it was before the field existed.
        data = self.model_dump(mode="json", exclude_none=False)
        if data.get("seq") is None:
            data.pop("seq", None)
        elif not data["seq"]["void"]:
            del data["seq"]["void"]
        return orjson.dumps(data)


_NO_NUL = r"^[^\x00]*$"
_StrictText = Annotated[str, Field(pattern=_NO_NUL)]


def _exact(table: dict[str, Any]) -> BeforeValidator:
    """The few spellings WorkTool itself sends as text, mapped as `MessageCallback` reads them; any
    other string stays a string and fails the strict type (then it is read the careful way)."""
    return BeforeValidator(lambda v: table.get(v, v) if type(v) is str else v)


# WorkTool's own JSON example sends atMe as "true"/"false", and some clients send roomType as text:
# half the records of a day, which the careful path read twice (benchmarks/README.md).
_AT_ME_TEXT = _exact({"true": True, "false": False})
_ROOM_TYPE_TEXT = _exact({str(code): code for code in (1, 2, 3, 4)})


class StrictMessageBody(BaseModel):
    """The message callback body as the gateway writes it to worktool.raw, read with as few Python
    calls as possible: every field strictly typed (a string without NUL, a bool, an int in range), so
    each value it accepts is one `MessageCallback`'s loose validators would have read the same; atMe
    and roomType also take WorkTool's exact text spellings ("true", "false", "1".."4"). Anything else
    (" TRUE", "yes", a number as text elsewhere, a NUL, a null) fails here and is read again by
    `MessageCallback` (the dataflow's parse falls back to the two-pass path): same result, same errors.
    Unknown keys are ignored (MessageCallback keeps them; the dataflow never reads them)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    spoken: _StrictText = ""
    rawSpoken: _StrictText = ""
    receivedName: Annotated[str, Field(min_length=1, pattern=_NO_NUL)]
    groupName: _StrictText = ""
    groupRemark: _StrictText = ""
    roomType: Annotated[int, _ROOM_TYPE_TEXT, Field(ge=1, le=4)] = 1
    atMe: Annotated[bool, _AT_ME_TEXT] = False
    textType: Annotated[int, Field(ge=0, le=SMALLINT_MAX)] = 1
    fileBase64: str | None = None


class MessageRecord(RawRecord):
    """A raw record of kind "message" with its body read in the same pass (the dataflow's parse: one
    pydantic pass over the JSON instead of two, see benchmarks/README.md). A record it refuses is read
    again as a `RawRecord` and a `MessageCallback`, so a rejection says exactly what it said before."""

    kind: Literal["message"]
    body: StrictMessageBody  # type: ignore[assignment]


ControlAction = Literal[
    "cancel_alert", "escalate_alert",  # an alert (its session's or robot's shard)
    "create_task", "update_task",  # an after-sales task (its session's shard): POST / PATCH /api/tasks
    "assign_task", "staff_status",  # the desk (operators/desk.py): PATCH .../assign, PUT /api/staff/{name}/status
]  # fmt: skip
# The after-sales desk's state key (operators/desk.py): a control record of this session is the desk's.
DESK_SESSION = "desk"
DESK_ACTIONS = frozenset({"assign_task", "staff_status"})
StaffAvailability = Literal["online", "busy", "offline"]
TaskOutcome = Literal["completed", "cancelled"]
_Name = Annotated[str, Field(min_length=1, max_length=128)]
# What each action needs besides the common fields.
_CONTROL_NEEDS: dict[str, tuple[str, ...]] = {
    "cancel_alert": ("alert_id",),
    "escalate_alert": ("alert_id",),
    "create_task": ("session_id", "task_id", "user_name", "task_type"),
    "update_task": ("session_id", "task_id", "task_outcome"),
    "assign_task": ("task_id", "staff_name"),
    "staff_status": ("staff_name", "staff_status"),
}


class ControlRecord(JsonRecord):
    """Value on worktool.control: an operator's action, applied by the dataflow in order with everything
    else (and part of an archive, so a replay applies it too). Written by the console API and by
    `worktool alerts`. `session_id` / `robot_id` say whose state it touches (alert_history has them):
    a session's alerts live with the session, a robot_fault alert with its robot."""

    action: ControlAction
    at: UtcDatetime
    actor: Annotated[str, Field(min_length=1, max_length=128)]
    reason: Annotated[str, Field(max_length=2000)] = ""
    request_id: Annotated[str, Field(min_length=1, max_length=128)]  # unique per request: applied once
    alert_id: str | None = None
    session_id: str | None = None
    robot_id: str | None = None
    # after-sales tasks and the desk
    task_id: Annotated[str, Field(max_length=64)] | None = None
    task_type: Annotated[str, Field(max_length=32)] | None = None
    user_name: _Name | None = None  # the owner a task is for
    description: Annotated[str, Field(max_length=2000)] | None = None
    task_outcome: TaskOutcome | None = None
    staff_name: _Name | None = None
    staff_status: StaffAvailability | None = None

    @model_validator(mode="after")
    def _has_what_its_action_needs(self) -> ControlRecord:
        missing = [f for f in _CONTROL_NEEDS.get(self.action, ()) if getattr(self, f) in (None, "")]
        if missing:
            raise ValueError(f"{self.action} needs {', '.join(missing)}")
        if self.action in DESK_ACTIONS:
            if self.session_id not in (None, DESK_SESSION):
                raise ValueError(f"{self.action} belongs to the desk (session_id {DESK_SESSION!r})")
            self.session_id = DESK_SESSION  # routed to the shard that forwards the desk's records
        return self


class CommandCause(BaseModel):
    event: str  # what decided it: reply_scheduled, alert_raised, alert_escalated, alert_reminder, ...
    message_id: str | None = None
    alert_id: str | None = None


class PassageRef(BaseModel):
    """A knowledge-base passage a reply was written from."""

    passage_id: str
    title: str
    source: str | None = None


class ReplyProvenance(BaseModel):
    """How an automatic reply's text was written (operators/reply_writer.py): by the LLM with a persona,
    from these knowledge-base passages. Absent on a template reply (its persona and template are on the
    command_created event)."""

    model_config = ConfigDict(extra="ignore")  # a recorded decision carries its reason too

    source: Literal["llm"] = "llm"
    persona: str
    model: str | None = None
    template_id: str | None = None  # the template it replaced (sent instead on any failure)
    passages: list[PassageRef] = Field(default_factory=list)


class CommandRecord(JsonRecord):
    """Value on worktool.commands: something to send, written by the dataflow, sent by the dispatcher.
    `command_id` is deterministic (derived from its cause), so a replay or a restart cannot double it."""

    command_id: str
    channel: CommandChannel
    robot_id: str | None  # the robot that sends a WeCom text; None for phone, SMS and Feishu
    target: str  # group remark/name or person (WeCom), a phone number or contact (phone, SMS), "feishu"
    content: str
    at_list: list[str] = Field(default_factory=list)
    due_time: UtcDatetime  # not before this (reply delays)
    cause: CommandCause
    reply: ReplyProvenance | None = None  # an LLM-written reply: how


def conversation_key(robot_id: str, room_type: int, group_name: str, group_remark: str, sender: str) -> str:
    """The session id. Group chats are shared by every robot in the group; a private chat is between
    one robot and one person, so it includes the robot."""
    if room_type in GROUP_ROOM_TYPES:
        return f"group:{group_name or group_remark}"
    return f"private:{robot_id}:{sender}"


def session_id_for(robot_id: str, body: MessageCallback) -> str:
    return conversation_key(robot_id, body.roomType, body.groupName, body.groupRemark, body.receivedName)


def raw_record_key(kind: str, robot_id: str, body: dict[str, Any]) -> str:
    """Kafka key for a raw record: every message of one conversation lands on one partition.
    Cheap on purpose (runs on the webhook hot path): the body is not validated, only read."""
    if kind == "message":
        try:
            room = int(body.get("roomType", 1))
        except (TypeError, ValueError):
            room = 1
        return conversation_key(
            robot_id,
            room,
            str(body.get("groupName") or ""),
            str(body.get("groupRemark") or ""),
            str(body.get("receivedName") or ""),
        )
    return f"robot:{robot_id}"


# ---------------------------------------------------------------------------------------------
# Inside the dataflow

SenderType = Literal["user", "staff", "operator", "assistant", "robot"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Canonical message parsed from a RawRecord of kind "message". Built only by operators/parse.py
    from validated callback bodies, so it is a plain dataclass: it is created for every record and a
    pydantic model cost ~20 µs each on the dataflow's hot path."""

    message_id: str
    session_id: str
    robot_id: str  # the robot that reported it first
    received_at: datetime  # UTC
    room_type: int
    is_group: bool
    group_name: str
    group_remark: str
    sender_name: str
    text: str  # `spoken`: the text with the @mention stripped
    raw_text: str  # `rawSpoken`
    text_type: int
    content_kind: str  # TEXT_TYPES name
    at_me: bool
    mentions: tuple[str, ...] = ()  # names @-mentioned in rawSpoken
    reply_target: str  # groupRemark or groupName (groups), receivedName (private)
    has_file: bool = False


class Classification(BaseModel):
    """Who spoke and what kind of message it is. `decided_by` records which path decided."""

    model_config = ConfigDict(frozen=True)

    sender_type: SenderType
    message_type: str | None  # None for robot messages
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str
    decided_by: Literal["rules", "model", "llm"] = "rules"
    sentiment: float | None = None  # -1 (negative) .. 1 (positive)
    need_reply: bool | None = None
    staff_command: str | None = None
    # The LLM's score of a staff or assistant reply to the owner's open question (docs/rules.md §3,
    # situation 2); None when no LLM scored it (the sessions step then scores it by the rules).
    reply_quality: float | None = Field(default=None, ge=0.0, le=1.0)


# "gateway", "dataflow", "dataflow:<step>", "sink:<sink>" (e.g. "sink:postgres", "sink:kafka").
LlmOperation = Literal["classify", "reply"]


class LlmRecord(JsonRecord):
    """One LLM decision the live dataflow made, recorded so that a replay makes the same one without a
    provider (issue 16, docs/architecture.md "Recorded LLM answers"): topic worktool.llm, included in
    `worktool archive` as a line `{"kind":"llm_answer",...}`. Keyed by what it decided about: the message
    (classify) or the reply command (reply). A recorded fallback (`status` "fallback": no answer in time,
    invalid, unsafe, breaker open) replays as the fallback, so a replay never asks for what live did not
    use."""

    kind: Literal["llm_answer"] = "llm_answer"
    operation: LlmOperation
    key: str = Field(min_length=1)  # message_id (classify) | command_id (reply)
    at: UtcDatetime  # event time of the message (classify) or of the reply's decision (reply)
    status: Literal["ok", "fallback"]
    provider: str | None = None
    model: str | None = None
    output: str | None = None  # classify: the completion's content (the verdict JSON); reply: the text sent
    detail: dict[str, Any] = Field(default_factory=dict)  # reply: persona, passages, template_id, reason


DLQ_STAGE_PATTERN = r"^(gateway|dataflow|sink)(:[A-Za-z0-9_.-]+)?$"


class DlqRecord(JsonRecord):
    """Value on worktool.dlq: what was rejected, where, and why."""

    stage: Annotated[str, Field(pattern=DLQ_STAGE_PATTERN)]
    reason: str
    received_at: UtcDatetime
    robot_id: str | None = None
    kind: str | None = None
    # The original bytes, decoded as UTF-8 with replacement so the record stays JSON.
    raw: str
    # True when `raw` was cut to keep the record within the largest record the topics take.
    truncated: bool = False

    def to_json_within(self, max_bytes: int) -> bytes:
        """The JSON value, with `raw` cut short (and `truncated` set) if the whole would exceed
        max_bytes: a dead letter must always be writable, even that of a record too large to write."""
        value = self.to_json()
        if len(value) <= max_bytes:
            return value
        # First cut in proportion; then every character takes at least one byte, so dropping as many
        # characters as there are bytes too many always fits.
        raw = self.raw[: len(self.raw) * max_bytes // len(value)]
        while True:
            value = self.model_copy(update={"raw": raw, "truncated": True}).to_json()
            if len(value) <= max_bytes or not raw:
                return value
            raw = raw[: max(0, len(raw) - (len(value) - max_bytes))]


# ---------------------------------------------------------------------------------------------
# The numeric fields of the callback models, with their accepted range and where they are stored: what
# the limits table in docs/platform.md lists and tests/infra/test_numeric_limits.py checks against the
# schema.


@dataclass(frozen=True, slots=True)
class NumericField:
    path: str  # "errorCode", or "items[].count" for a nested one
    low: float | None  # None: unbounded (no storage can hold that)
    high: float | None
    is_float: bool
    stored: StoredIn | None  # None: nobody said where it goes (a test fails)


def _bounds(metadata: list[Any]) -> tuple[Any, Any, StoredIn | None]:
    low = high = stored = None
    for m in metadata:
        inner = getattr(m, "metadata", None)
        if isinstance(inner, list):  # a FieldInfo inside Annotated
            lo, hi, st = _bounds(inner)
            low, high, stored = lo if lo is not None else low, hi if hi is not None else high, st or stored
        if isinstance(m, StoredIn):
            stored = m
        low = getattr(m, "ge", low)
        high = getattr(m, "le", high)
    return low, high, stored


def _literal_ints(tp: Any) -> tuple[int, ...] | None:
    values = typing.get_args(tp)
    return values if all(isinstance(v, int) and not isinstance(v, bool) for v in values) else None


def _walk(out: list[NumericField], path: str, tp: Any, metadata: list[Any]) -> None:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *meta = typing.get_args(tp)
        _walk(out, path, base, [*metadata, *meta])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                _walk(out, path, arg, metadata)
    elif origin is Literal:
        if values := _literal_ints(tp):
            out.append(NumericField(path, min(values), max(values), False, _bounds(metadata)[2]))
    elif origin in (list, tuple, set, frozenset, dict):
        for arg in typing.get_args(tp):
            _walk(out, f"{path}[]", arg, [])
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        out.extend(numeric_fields(tp, f"{path}."))
    elif tp in (int, float):
        low, high, stored = _bounds(metadata)
        out.append(NumericField(path, low, high, tp is float, stored))


def numeric_fields(model: type[BaseModel], prefix: str = "") -> list[NumericField]:
    """Every int, float or integer-Literal field of `model`, nested models and lists included."""
    out: list[NumericField] = []
    for name, info in model.model_fields.items():
        _walk(out, f"{prefix}{name}", info.annotation, list(info.metadata))
    return out


# The models of the callbacks the gateway accepts (online and offline bodies are not parsed: their path
# says everything) and of the dispatcher's accepted records, which share their columns.
CALLBACK_MODELS: dict[str, type[BaseModel]] = {
    "message": MessageCallback,
    "result": ResultCallback,
    "qrcode": ResultCallback,
    "accepted": AcceptedBody,
}
