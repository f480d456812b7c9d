"""Bytewax sources of the flow: live ticks and JSONL archives (with data-derived ticks)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import orjson
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE, KafkaSource, KafkaSourceMessage
from bytewax.connectors.kafka import KafkaError as BytewaxKafkaError
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from pydantic import ConfigDict, create_model

from infra import kafka_clients
from infra.archive_io import iter_lines
from infra.topic_watch import CHECK_INTERVAL_S, TopicWatch
from operators.gaps import SeqMark
from operators.recordings import LINE_PREFIX, BadRecording, Recordings
from operators.shard import robot_key, shard_for
from operators.timers import Tick
from worktool.models import NUL, MessageCallback, RoomType, conversation_key, to_utc

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ live ticks


TICK_QUIET_S = 1.0  # live ticks slow down once no record was delivered for this long


class TickPace:
    """When the live ticks come: every `busy` interval while records arrive (one was delivered within
    the last `quiet_s`), every `idle` interval once none has been. A tick carries the watermark (wall
    time - allowed lateness), so a slower idle tick only delays a due timer by the extra interval: a
    timer fires within lateness + `idle` of its due time while nothing arrives (lateness + `busy` while
    records do). A delivery makes the next tick due `busy` after the last one, at once if that has
    passed. Shared by the tick partition and the process's Kafka consumers, which report deliveries
    (`delivered`) and, in a one-worker flow, wait for records until the next idle tick is due
    (`idle_wait`). `clock` is monotonic seconds (injected by tests)."""

    def __init__(
        self,
        busy: timedelta,
        idle: timedelta | None = None,
        quiet_s: float = TICK_QUIET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.busy = busy.total_seconds()
        self.idle = max(self.busy, idle.total_seconds() if idle is not None else self.busy)
        self.quiet_s = quiet_s
        self.clock = clock
        self._delivered = float("-inf")
        self._last: float | None = None  # when the last tick was emitted

    def delivered(self) -> None:
        self._delivered = self.clock()

    def interval(self, now: float) -> float:
        return self.busy if now - self._delivered < self.quiet_s else self.idle

    def take_tick(self) -> bool:
        """True (and the tick counted) if a tick is due now."""
        now = self.clock()
        if self._last is not None and now < self._last + self.interval(now):
            return False
        self._last = now
        return True

    def until_busy_tick(self) -> float:
        """Seconds until a tick would be due if records arrived (0: now)."""
        return 0.0 if self._last is None else max(0.0, self._last + self.busy - self.clock())

    def idle_wait(self) -> float | None:
        """While ticks are idle: seconds until the next one is due (a consumer may wait that long for a
        record, the poll returns as soon as one arrives); None while they are busy."""
        now = self.clock()
        if self._last is None or self.interval(now) == self.busy:
            return None
        return min(self.idle, max(0.0, self._last + self.idle - now))


class _TickPartition(StatelessSourcePartition[Tick]):
    def __init__(
        self, interval: timedelta, lag: timedelta, active: bool, pace: TickPace | None = None
    ) -> None:
        self._pace = pace or TickPace(interval)
        self._lag = lag
        self._active = active

    def next_batch(self) -> list[Tick]:
        if not self._active or not self._pace.take_tick():
            return []
        return [Tick(datetime.now(UTC) - self._lag)]

    def next_awake(self) -> datetime | None:
        # Idle workers sleep for long stretches instead of polling. Called again once the busy interval
        # has passed: a record arriving while ticks are idle brings the next tick forward (while nothing
        # arrives, the poller's wait in consume() paces a one-worker flow to the idle ticks).
        now = datetime.now(UTC)
        if not self._active:
            return now + timedelta(hours=1)
        return now + timedelta(seconds=self._pace.until_busy_tick())


class TickSource(DynamicSource[Tick]):
    """Wall-clock ticks, emitted by worker 0 only (the flow broadcasts each tick to every shard), every
    `interval` while records arrive and every `idle_interval` (default: the same) once none has for a
    second (`TickPace`)."""

    def __init__(self, interval: timedelta, lag: timedelta, idle_interval: timedelta | None = None) -> None:
        self.interval = interval
        self.lag = lag
        self.pace = TickPace(interval, idle_interval)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TickPartition:
        return _TickPartition(self.interval, self.lag, active=worker_index == 0, pace=self.pace)


class _TickPart(StatefulSourcePartition[Tick, None]):
    """The tick partition of a `WithTicks` source (ticks carry no resume state)."""

    def __init__(self, interval: timedelta, lag: timedelta, pace: TickPace | None = None) -> None:
        self._ticks = _TickPartition(interval, lag, active=True, pace=pace)

    def next_batch(self) -> list[Tick]:
        return self._ticks.next_batch()

    def next_awake(self) -> datetime | None:
        return self._ticks.next_awake()

    def snapshot(self) -> None:
        return None


TICK_PART = "ticks"


class WithTicks(FixedPartitionedSource[Any, Any]):
    """A partitioned source plus one partition of wall-clock ticks, in one bytewax input step.

    Why not a second input: bytewax stops polling a partition that has started a new epoch until
    every input has finished the previous one, and an input moves to the next epoch only when it is
    woken. A separate tick input is woken once per tick interval, so at every epoch (snapshot) boundary
    the Kafka partitions waited up to one tick interval (0.25 s) for it: about one record in ten waited
    100-300 ms (measured, benchmarks/README.md). Partitions of one input are woken together and move to
    the next epoch in the same activation."""

    def __init__(self, inner: FixedPartitionedSource[Any, Any], ticks: TickSource) -> None:
        self.inner = inner
        self.ticks = ticks

    def list_parts(self) -> list[str]:
        return [*self.inner.list_parts(), TICK_PART]

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> StatefulSourcePartition[Any, Any]:
        if for_part == TICK_PART:
            return _TickPart(self.ticks.interval, self.ticks.lag, self.ticks.pace)
        return self.inner.build_part(step_id, for_part, resume_state)


# ------------------------------------------------------------------------------------ archives


def _load(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _stamp_of(record: Any) -> datetime | None:
    try:
        return to_utc(record.get("received_at") or record["at"])  # a raw record, or a control record
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _stamp(line: bytes) -> datetime | None:
    return _stamp_of(_load(line))


@dataclass(frozen=True)
class ArchiveScan:
    """What one pass over an archive found: its records, whether they are in event-time order (every
    readable stamp at or after the ones before it), which a streaming replay needs, and the live run's
    recorded LLM answers (its `{"kind":"llm_answer",...}` lines: not records to process, and not part of
    the order, since a live run writes them in the order its calls come back)."""

    records: int
    in_order: bool
    recordings: Recordings = field(default_factory=Recordings)
    # With `scan_archive(slicing=...)`: where each record goes in a replay of several workers.
    routes: SliceRoutes | None = None


@dataclass(frozen=True)
class SliceRoutes:
    """What the workers of a sliced replay (`ArchiveSlice`) need of every record line, found once by the
    first pass (`scan_archive`, which reads every record anyway) instead of by every worker: the slice
    that owns it, its stamp (POSIX seconds, NaN without one: the ticks), and for the lines slice 0 does
    not own, their gateway stamp (`mark_of`: (gw, n, void, at or None when `at` is the stamp itself)).
    A worker then skips another slice's record without reading it (`archive_items`)."""

    count: int
    owners: bytes
    stamps: array
    marks: dict[int, tuple[str, int, tuple[int, ...], datetime | None]]

    def for_slice(self, index: int) -> SliceRoutes:
        """The routes one worker needs: only slice 0 (the gaps step's) takes the marks."""
        return self if index == 0 else replace(self, marks={})


class _Routing:
    """Builds `SliceRoutes` line by line, as `ArchiveSlice.owns` and `mark_of` decide."""

    def __init__(self, shards: int, count: int) -> None:
        self.slice = ArchiveSlice(0, count, shards, marks=True)
        self.owners = bytearray()
        self.stamps = array("d")
        self.marks: dict[int, tuple[str, int, tuple[int, ...], datetime | None]] = {}
        self._gws: dict[str, str] = {}  # one string per gateway id (pickled once)

    def add(self, line: bytes, record: Any, ts: datetime | None) -> None:
        if self.slice.count == 1:  # one worker: every record is its own, only the stamps are wanted
            self.owners.append(0)
            self.stamps.append(NAN if ts is None else ts.timestamp())
            return
        shard = self.slice.shard_of(line, record)
        owner = 0 if shard is None else shard % self.slice.count
        i = len(self.owners)
        self.owners.append(owner)
        self.stamps.append(NAN if ts is None else ts.timestamp())
        if owner and (mark := mark_of(record, ts)) is not None:
            same = ts is not None and mark.at.tzinfo is UTC and _at(ts.timestamp()) == mark.at
            at = None if same else mark.at
            self.marks[i] = (self._gws.setdefault(mark.gw, mark.gw), mark.n, mark.void, at)

    def routes(self) -> SliceRoutes:
        return SliceRoutes(self.slice.count, bytes(self.owners), self.stamps, self.marks)


NAN = float("nan")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def scan_archive(path: Path, slicing: tuple[int, int] | None = None) -> ArchiveScan:
    """Count the archive's records, check their order and collect its recorded LLM answers, reading it
    as a stream. Raises `ArchiveError` for a corrupt or truncated compressed archive (before any record
    is replayed). A line that starts as an answer but is not one is skipped (logged): the rules decide
    that message, as when nothing was recorded. `slicing` (shards, workers): also where each record goes
    in a replay of that many workers, and every record's stamp (`SliceRoutes`; one worker: the stamps)."""
    records, in_order, last = 0, True, None
    recordings, bad = Recordings(), 0
    routing = _Routing(*slicing) if slicing is not None else None
    for line in iter_lines(path):
        if line.startswith(LINE_PREFIX):
            try:
                recordings.add_line(line)
            except BadRecording as e:
                bad += 1
                if bad <= 5:
                    log.warning("%s: %s", path, e)
            continue
        records += 1
        record = _load(line)
        ts = _stamp_of(record)
        if routing is not None:
            routing.add(line, record, ts)
        if ts is not None:
            if last is not None and ts < last:
                in_order = False
            else:
                last = ts
    if bad:
        log.warning("%s: %d unreadable recorded LLM answers skipped", path, bad)
    routes = routing.routes() if routing is not None and in_order else None
    return ArchiveScan(records, in_order, recordings, routes)


def load_archive(path: Path) -> list[tuple[datetime | None, bytes]]:
    """Archive lines in event-time order (stable sort), all in memory: for an archive that is not in
    order (`scan_archive`). A line without a readable stamp keeps its place after the previous line, so
    it still reaches the DLQ in order."""
    rows = [(_stamp(line), line) for line in iter_lines(path) if not line.startswith(LINE_PREFIX)]
    last = datetime.min.replace(tzinfo=UTC)
    keyed = []
    for i, (ts, line) in enumerate(rows):
        last = ts if ts is not None and ts > last else last
        keyed.append((ts or last, i, ts, line))
    keyed.sort(key=lambda r: (r[0], r[1]))
    return [(ts, line) for _, _, ts, line in keyed]


class _Ticker:
    """The replay's watermark: before a record stamped t, a Tick at (t - lateness) rounded down to the
    tick interval, when that is past the last tick (so at most one tick per interval)."""

    def __init__(self, interval: timedelta, lateness: timedelta) -> None:
        self.step = interval.total_seconds()
        self.lateness = lateness.total_seconds()
        self.last: datetime | None = None
        self._next = float("-inf")  # no tick before a record stamped (after lateness) below this

    def before(self, ts: datetime) -> Tick | None:
        return self.before_seconds(ts.timestamp())

    def before_seconds(self, stamp: float) -> Tick | None:
        """`before` of a stamp given as POSIX seconds."""
        mark = stamp - self.lateness
        if mark < self._next:  # within the last tick's interval (most records): no datetime work
            return None
        boundary = datetime.fromtimestamp((mark // self.step) * self.step, UTC)
        if self.last is None or boundary > self.last:
            self.last = boundary
            self._next = boundary.timestamp() + self.step
            return Tick(boundary)
        return None

    def until(self, until: datetime | None) -> Tick | None:
        """With `until`, a last Tick(until) after the archive fires everything due by then."""
        if until is not None and (self.last is None or until > self.last):
            self.last = until
            return Tick(until)
        return None


def with_data_ticks(
    rows: list[tuple[datetime | None, bytes]],
    interval: timedelta,
    lateness: timedelta = timedelta(0),
    until: datetime | None = None,
) -> list[bytes | Tick]:
    """Archive rows (stamp, line) in event-time order, with the replay's ticks interleaved."""
    ticker = _Ticker(interval, lateness)
    out: list[bytes | Tick] = []
    for ts, line in rows:
        if ts is not None and (tick := ticker.before(ts)) is not None:
            out.append(tick)
        out.append(line)
    if (tick := ticker.until(until)) is not None:
        out.append(tick)
    return out


@dataclass(frozen=True)
class ArchiveSlice:
    """The share of an archive that one of `count` independent replays takes (dataflows/replay.py,
    `worktool replay --workers`): the records of the shards `shard % count == index`, whole
    conversations in order, and every tick (derived from all records, at the same places as in a replay
    of the whole archive), so each of its shards sees exactly what it sees in a one-worker replay.
    The replay with `marks` also gets, in place of each record that is not its own, that record's gateway
    stamp as a `SeqMark`, so its gaps step (which needs every stamp, in order) sees the whole archive;
    the others run without a gaps step (`FlowOptions.gaps`)."""

    index: int
    count: int
    shards: int
    marks: bool
    # Where every record goes, found by the first pass (`scan_archive(slicing=...)`); None: each record
    # is read here to find out.
    routes: SliceRoutes | None = field(default=None, compare=False, repr=False)

    def shard_of(self, line: bytes, record: Any) -> int | None:
        """The shard the flow sends this record to (dataflows/flow.py `_route_input`), or None for a record
        the flow rejects before sharding (it goes to replay 0)."""
        try:
            if line.startswith(b'{"action"'):  # a control record (flow.py `_parse`)
                key = record.get("session_id") or robot_key(record.get("robot_id") or "")
            elif record["kind"] == "message":
                key = conversation_of(record["robot_id"], record["body"])
            else:
                key = robot_key(record["robot_id"])
            return int(shard_for(key, self.shards))
        except (KeyError, TypeError, ValueError, AttributeError):  # pydantic's ValidationError too
            return None

    def owns(self, line: bytes, record: Any) -> bool:
        shard = self.shard_of(line, record)
        return (0 if shard is None else shard % self.count) == self.index


# The fields of a message callback its session id is made of, validated exactly as MessageCallback does
# (the same field definitions), without the rest of the body.
_CONVERSATION_FIELDS = ("receivedName", "groupName", "groupRemark", "roomType")
_ConversationFields = create_model(  # type: ignore[call-overload]
    "_ConversationFields",
    __config__=ConfigDict(extra="ignore"),
    **{name: (MessageCallback.model_fields[name].annotation, MessageCallback.model_fields[name])
       for name in _CONVERSATION_FIELDS},
)  # fmt: skip
_ROOM_TYPES = frozenset(get_args(RoomType))


def conversation_of(robot_id: str, body: dict[str, Any]) -> str:
    """The session id operators/parse.py gives a message record (MessageCallback + session_id_for).
    Plain values (an int room type, strings without NUL) are read as they are, which is what the
    model's validators leave them as; anything else goes through the model's own field validators
    (once per distinct set of values and their types: `_validated_fields`)."""
    room = body.get("roomType", 1)
    group, remark, sender = body.get("groupName", ""), body.get("groupRemark", ""), body.get("receivedName")
    if (
        type(room) is int
        and type(group) is str
        and type(remark) is str
        and type(sender) is str
        and room in _ROOM_TYPES
        and NUL not in group
        and NUL not in remark
        and NUL not in sender
    ):
        return conversation_key(robot_id, room, group, remark, sender)
    return conversation_key(robot_id, *_validated_fields(body, (room, group, remark, sender)))


_VALIDATED: dict[tuple[Any, ...], tuple[int, str, str, str] | str] = {}
_VALIDATED_MAX = 100_000


def _validated_fields(body: dict[str, Any], values: tuple[Any, ...]) -> tuple[int, str, str, str]:
    """The four fields as `_ConversationFields` validates them. They depend on these values only (a
    missing key reads as its default), so the answer is kept by the values and their types (1, 1.0 and
    True hash alike but may not validate alike); a rejection is kept as its message and raised again as
    a ValueError (pydantic's ValidationError is one)."""
    try:
        key: tuple[Any, ...] | None = (*values, *map(type, values))
        hit = _VALIDATED.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable value (a list, a dict): not kept
        key, hit = None, None
    if hit is None:
        try:
            f = _ConversationFields.model_validate(body)
            hit = (f.roomType, f.groupName, f.groupRemark, f.receivedName)
        except ValueError as e:
            _keep(key, str(e))
            raise
        _keep(key, hit)
    if isinstance(hit, str):
        raise ValueError(hit)
    return hit


def _keep(key: tuple[Any, ...] | None, answer: tuple[int, str, str, str] | str) -> None:
    if key is not None:
        if len(_VALIDATED) >= _VALIDATED_MAX:
            _VALIDATED.clear()
        _VALIDATED[key] = answer


def mark_of(record: Any, at: datetime | None) -> SeqMark | None:
    """The gateway stamp of a raw record (already read: its dict and its `received_at`), as the flow's
    parse step reads it (dataflows/flow.py `_mark`, `_lenient_mark`), or None without one."""
    try:
        seq = record["seq"]
        if at is None or not record.get("received_at"):
            return None
        return SeqMark(str(seq["gw"]), int(seq["n"]), at, tuple(int(v) for v in seq.get("void") or ()))
    except Exception:
        return None


def archive_items(
    path: Path,
    interval: timedelta,
    lateness: timedelta = timedelta(0),
    until: datetime | None = None,
    part: ArchiveSlice | None = None,
    routes: SliceRoutes | None = None,
) -> Iterator[bytes | Tick | SeqMark]:
    """The replay's items, streamed from an archive in event-time order: its lines (those of `part`)
    with the ticks interleaved (`_Ticker`). Recorded LLM answers are not items (`scan_archive` reads
    them). With the routes the first pass found (`part.routes`, or `routes` of one worker), no line is
    read here: the stamps are known."""
    ticker = _Ticker(interval, lateness)
    routes = part.routes if part is not None else routes
    if routes is not None:
        yield from _routed_items(path, ticker, until, part.index if part is not None else 0, routes)
        return
    for line in iter_lines(path):
        if line.startswith(LINE_PREFIX):
            continue
        record = _load(line)
        ts = _stamp_of(record)
        if ts is not None and (tick := ticker.before(ts)) is not None:
            yield tick
        if part is None or part.owns(line, record):
            yield line
        elif part.marks and (mark := mark_of(record, ts)) is not None:
            yield mark
    if (tick := ticker.until(until)) is not None:
        yield tick


def _routed_items(
    path: Path, ticker: _Ticker, until: datetime | None, index: int, routes: SliceRoutes
) -> Iterator[bytes | Tick | SeqMark]:
    """`archive_items` of a slice whose routes the first pass found: the same items, and no record read
    but its own (the flow's parse step reads those)."""
    owners, stamps, marks = routes.owners, routes.stamps, routes.marks
    before = ticker.before_seconds
    i = -1
    for line in iter_lines(path):
        if line.startswith(LINE_PREFIX):
            continue
        i += 1
        stamp = stamps[i]  # IndexError: the archive changed since the first pass
        if stamp == stamp and (tick := before(stamp)) is not None:  # NaN: no stamp
            yield tick
        if owners[i] == index:
            yield line
        elif (mark := marks.get(i)) is not None:
            gw, n, void, at = mark
            yield SeqMark(gw, n, _at(stamp) if at is None else at, void)
    if i + 1 != len(owners):
        raise ValueError(f"{path} changed since it was scanned ({i + 1} records, {len(owners)} before)")
    if (tick := ticker.until(until)) is not None:
        yield tick


class _StreamPartition(StatefulSourcePartition[bytes | Tick | SeqMark, int]):
    def __init__(
        self,
        items: Iterator[bytes | Tick | SeqMark],
        resume: int | None,
        batch_size: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self._items = items
        self._i = 0
        for _ in itertools.islice(items, resume or 0):  # a resumed replay skips what it emitted
            self._i += 1
        self._batch = batch_size
        self._on_progress = on_progress

    def next_batch(self) -> list[bytes | Tick | SeqMark]:
        batch = list(itertools.islice(self._items, self._batch))
        if not batch:
            raise StopIteration
        self._i += len(batch)
        if self._on_progress:
            self._on_progress(sum(1 for x in batch if isinstance(x, bytes)))
        return batch

    def snapshot(self) -> int:
        return self._i


class ArchiveSource(FixedPartitionedSource[bytes | Tick | SeqMark, int]):
    """A JSONL archive of raw records (plain or compressed, infra/archive_io.py), replayed in event
    time with data-derived ticks. Streamed when the archive is in event-time order (what `worktool
    archive` writes), sorted in memory when it is not. With `part`, only that slice of it (the replays
    of `worktool replay --workers`)."""

    def __init__(
        self,
        path: Path,
        tick_interval: timedelta,
        batch_size: int = 1000,
        on_progress: Callable[[int], None] | None = None,
        lateness: timedelta = timedelta(0),
        until: datetime | None = None,
        part: ArchiveSlice | None = None,
        scan: ArchiveScan | None = None,
    ) -> None:
        self.path = path
        self.scan = scan or scan_archive(path)
        self.tick_interval = tick_interval
        self.lateness = lateness
        self.until = until
        self.part = part
        self.batch_size = batch_size
        self.on_progress = on_progress
        self._sorted: list[bytes | Tick] | None = None
        if not self.scan.in_order:
            if part is not None:
                raise ValueError(f"{path}: a slice of an archive needs the archive in event-time order")
            log.warning(
                "%s is not in event-time order: sorting its %d records in memory", path, self.scan.records
            )
            self._sorted = with_data_ticks(load_archive(path), tick_interval, lateness, until)

    @property
    def record_count(self) -> int:
        return self.scan.records

    def list_parts(self) -> list[str]:
        return ["archive"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _StreamPartition:
        if self._sorted is not None:
            items: Iterator[bytes | Tick | SeqMark] = iter(self._sorted)
        else:
            routes = self.scan.routes if self.part is None and self.scan.routes is not None else None
            if routes is not None and routes.count != 1:
                routes = None  # routes of a slicing, not of the whole archive
            items = archive_items(self.path, self.tick_interval, self.lateness, self.until, self.part, routes)
        return _StreamPartition(items, resume_state, self.batch_size, self.on_progress)


# ------------------------------------------------------------------------------------ live Kafka


OffsetReset = Callable[[str, str], None]  # (partition "idx-topic", why)


# bytewax's KafkaSource opens one librdkafka consumer per partition, and bytewax polls an idle partition
# again after 1 ms. Nine partitions, nine consumers: each with its own threads fetching from the broker
# every fetch.wait.max.ms, each polled ~40 times a second: ~11 % of a core in the dataflow and ~23 % in
# the embedded broker with no record arriving (benchmarks/README.md, "Idle stack"). Instead one consumer
# per worker reads every partition the worker owns (`_SharedConsumer`): one fetch request for all of
# them, and one partition (the poller) waits in `consume()` while nothing is buffered, which returns as
# soon as a record arrives (so an idle flow reacts faster than with a fixed idle poll, not slower).
IDLE_BLOCK_S = 0.05  # the poller's wait while nothing is buffered; bounds how late a tick or an epoch is
QUIET_S = 0.2  # ...once nothing was delivered for this long (until then it polls without waiting)
# Consumer errors that mean "the position is not in this partition any more": a real Kafka cluster
# answers them for an offset beyond the end or before the start (with auto.offset.reset=error,
# librdkafka reports them instead of silently jumping to the end).
POSITION_LOST = {KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET}

PartKey = tuple[str, int]  # (topic, partition)


class _SharedConsumer:
    """One consumer for every Kafka partition of one worker, its records sorted into per-partition
    buffers. Only the poller partition polls; the others take what was buffered for them."""

    def __init__(
        self,
        config: dict[str, Any],
        batch_size: int,
        on_empty: Callable[[], None],
        pace: TickPace | None = None,
        wait_for_ticks: bool = False,
    ) -> None:
        self._consumer = kafka_clients.consumer("dataflow", "", config={**config, "stats_cb": self._stats})
        self._batch_size = batch_size
        self._buffers: dict[PartKey, list[Any]] = {}
        self._parts: dict[PartKey, _KafkaPart] = {}
        self._lock = threading.Lock()
        self._on_empty = on_empty
        self._delivered_at = 0.0  # when a partition last took records (monotonic)
        self._pace = pace  # told of deliveries (the live ticks are faster while records arrive)
        self._wait_for_ticks = wait_for_ticks and pace is not None
        self.poller: _KafkaPart | None = None

    def assign(self, part: _KafkaPart, offset: int) -> None:
        with self._lock:
            old = self._parts.get(part.key)  # built again without a close (a test's resume): replaced
            self._parts[part.key] = part
            self._buffers[part.key] = []
            if self.poller is None or self.poller is old:
                self.poller = part
        if old is not None:
            self._consumer.incremental_unassign([TopicPartition(part.key[0], part.key[1])])
        self._consumer.incremental_assign([TopicPartition(part.key[0], part.key[1], offset)])

    def unassign(self, part: _KafkaPart) -> None:
        with self._lock:
            if self._parts.get(part.key) is not part:
                return
            del self._parts[part.key], self._buffers[part.key]
            if self.poller is part:
                self.poller = next(iter(self._parts.values()), None)
            empty = not self._parts
        with contextlib.suppress(Exception):
            self._consumer.incremental_unassign([TopicPartition(part.key[0], part.key[1])])
        if empty:
            self._on_empty()
            self._consumer.close()

    def retire(self, part: _KafkaPart) -> None:
        """`part` reached its end (no tail) and is not called again: another partition polls."""
        with self._lock:
            if self.poller is part:
                self.poller = next((p for p in self._parts.values() if not p.ended), None)

    def poll(self, part: _KafkaPart) -> None:
        """Called by the poller: fetch what is there without waiting while anything is buffered (the
        other partitions take it on their next call, within a millisecond) or was just delivered, else
        wait up to IDLE_BLOCK_S for the first record."""
        buffered = sum(len(b) for b in self._buffers.values())
        if buffered >= self._batch_size:
            return
        # Wait only when the worker is quiet: records delivered recently are still on their way through
        # the downstream steps (several activations of the worker), and a wait in the input step holds
        # them up (measured: +35 ms of median latency when it waited right after a delivery).
        quiet = time.monotonic() - self._delivered_at > QUIET_S
        wait = 0.0 if buffered or not quiet else IDLE_BLOCK_S
        if wait and self._wait_for_ticks:
            # A one-worker flow whose ticks are idle waits until the next tick is due: nothing else can
            # need the worker before then (a record ends the wait; with more workers, a worker waiting
            # here would hold up what the others route to it, so they keep IDLE_BLOCK_S).
            idle = self._pace.idle_wait()  # type: ignore[union-attr]
            if idle is not None and idle > wait:
                # A batch of one: consume() waits for a whole batch or the timeout (measured: the records
                # of a 1-s wait for a batch were held up to 0.8 s); this returns with the first record.
                messages = self._consumer.consume(1, idle)
                if messages:
                    messages += self._consumer.consume(self._batch_size - 1, 0)
                self._sort(part, messages)
                return
        self._sort(part, self._consumer.consume(self._batch_size, wait))

    def _sort(self, part: _KafkaPart, messages: list[Any]) -> None:
        with self._lock:
            for msg in messages:
                buffer = self._buffers.get((msg.topic(), msg.partition()))
                if buffer is None:  # an error of the consumer as a whole: the poller reports it
                    buffer = self._buffers.get(part.key)
                    if buffer is None or msg.error() is None:
                        continue
                buffer.append(msg)

    def take(self, key: PartKey) -> list[Any]:
        with self._lock:
            out = self._buffers.get(key) or []
            if out:
                self._buffers[key] = []
                self._delivered_at = time.monotonic()
                if self._pace is not None:
                    self._pace.delivered()
            return out

    def _stats(self, json_stats: str) -> None:
        """bytewax's consumer-lag gauge, per partition, from librdkafka's statistics."""
        try:
            topics = orjson.loads(json_stats)["topics"]
            for (topic, index), part in list(self._parts.items()):
                stats = topics.get(topic, {}).get("partitions", {}).get(str(index))
                if stats is not None and part.offset > 0:
                    BYTEWAX_CONSUMER_LAG_GAUGE.labels(step_id=part.step_id, topic=topic, partition=index).set(
                        stats["ls_offset"] - part.offset
                    )
        except Exception as e:  # metrics must never stop the flow
            log.debug("kafka statistics: %s", e)


class _KafkaPart(StatefulSourcePartition[Any, int | None]):
    """One Kafka partition read through its worker's `_SharedConsumer`. Emits bytewax's
    `KafkaSourceMessage` / `KafkaError` items and snapshots the next offset, as bytewax's own
    partition does."""

    def __init__(
        self, shared: _SharedConsumer, step_id: str, key: PartKey, offset: int, raise_on_errors: bool
    ) -> None:
        self._shared = shared
        self.step_id = step_id
        self.key = key
        self.offset = offset
        self._raise = raise_on_errors
        self._eof = False
        self._closed = False
        shared.assign(self, offset)

    @property
    def ended(self) -> bool:
        return self._eof

    def next_batch(self) -> list[Any]:
        if self._eof:
            raise StopIteration
        if self._shared.poller is self:
            self._shared.poll(self)
        batch: list[Any] = []
        last = None
        for msg in self._shared.take(self.key):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if msg.topic() == self.key[0] and msg.partition() == self.key[1]:
                        self._eof = True  # StopIteration on the next call, after this batch
                        self._shared.retire(self)
                        break
                    continue
                if self._raise:
                    raise RuntimeError(f"error consuming from Kafka topic `{self.key[0]!r}`: {error}")
            item = KafkaSourceMessage(
                key=msg.key(), value=msg.value(), topic=msg.topic(), headers=msg.headers() or [],
                latency=msg.latency(), offset=msg.offset(), partition=msg.partition(), timestamp=msg.timestamp(),
            )  # fmt: skip
            if error is None:
                batch.append(item)
                last = msg.offset()
            else:
                batch.append(BytewaxKafkaError(error, item))
        if last is not None:
            self.offset = last + 1
        return batch

    def next_awake(self) -> datetime | None:
        # None: bytewax calls again at once after a batch, 1 ms after an empty one; the poller's wait in
        # consume() paces the worker while idle, and no partition sleeps past a record buffered for it.
        return None

    def snapshot(self) -> int | None:
        return self.offset

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shared.unassign(self)


class _GuardedPartition(StatefulSourcePartition[Any, tuple[str | None, int | None]]):
    """One Kafka partition that restarts from the beginning, loudly, when its topic is recreated or its
    position is lost while it runs (checked against the watch's ids on every poll: a dict lookup)."""

    def __init__(
        self,
        build: Callable[[int | None], StatefulSourcePartition[Any, Any]],
        for_part: str,
        topic_id: str | None,
        watch: TopicWatch | None,
        on_reset: OffsetReset,
        resume_offset: int | None,
    ) -> None:
        self._build = build
        self._part = for_part
        self._topic = for_part.split("-", 1)[1]
        self._topic_id = topic_id
        self._watch = watch
        self._on_reset = on_reset
        self._inner = build(resume_offset)

    def next_batch(self) -> list[Any]:
        if self._watch is not None:
            now_id = self._watch.current(self._topic)
            if now_id is not None and now_id != self._topic_id:
                if self._topic_id is not None:
                    self._restart(f"topic {self._topic} was recreated (id {self._topic_id} -> {now_id})")
                self._topic_id = now_id
        batch = self._inner.next_batch()
        lost = [item for item in batch if _error_code(item) in POSITION_LOST]
        if lost:
            batch = [item for item in batch if _error_code(item) not in POSITION_LOST]
            self._restart(
                f"position lost in {self._topic} partition {self._part.split('-', 1)[0]}: {lost[0].err}"
            )
            if self._watch is not None:
                self._watch.check_soon()
        return batch

    def _restart(self, why: str) -> None:
        self._on_reset(self._part, why)
        with contextlib.suppress(Exception):
            self._inner.close()
        self._inner = self._build(OFFSET_BEGINNING)

    def next_awake(self) -> datetime | None:
        return self._inner.next_awake()

    def snapshot(self) -> tuple[str | None, int | None]:
        return (self._topic_id, self._inner.snapshot())

    def close(self) -> None:
        self._inner.close()


def _error_code(item: Any) -> int | None:
    err = getattr(item, "err", None)  # bytewax's KafkaError item
    return err.code() if err is not None and hasattr(err, "code") else None


class GuardedKafkaSource(FixedPartitionedSource[Any, tuple[str | None, int | None]]):
    """bytewax's KafkaSource, reading only the topic it read before, also while it runs.

    A resume state is (topic id, offset). A topic replaced since the snapshot (a new id: the embedded
    broker forgets its topics on restart, a real cluster can be rebuilt) would make bytewax resume at an
    offset of the old topic and silently skip, or wait for, records of the new one. Instead the partition
    starts from the beginning of the new topic (the sinks are idempotent) and `on_reset` says so loudly.
    A resume offset beyond the partition's end is treated the same way. While the flow runs, a
    `TopicWatch` (one per process) re-reads the topic ids every couple of seconds, and a partition whose
    topic got a new id, or whose consumer reports its position out of range, restarts from the
    beginning in the same way."""

    def __init__(
        self,
        inner: KafkaSource,
        bootstrap: str,
        on_reset: OffsetReset,
        check_interval_s: float = CHECK_INTERVAL_S,
        pace: TickPace | None = None,
        wait_for_ticks: bool = False,
    ) -> None:
        self.inner = inner
        self.pace = pace  # the live ticks', told of deliveries
        self.wait_for_ticks = wait_for_ticks  # a one-worker flow: wait in consume() until the idle tick
        self.bootstrap = bootstrap
        self.on_reset = on_reset
        self.check_interval_s = check_interval_s
        self._watch: TopicWatch | None = None
        self._consumers: dict[tuple[str, int], _SharedConsumer] = {}
        self._lock = threading.Lock()

    def list_parts(self) -> list[str]:
        return self.inner.list_parts()

    def watch(self) -> TopicWatch:
        if self._watch is None:
            topics = list(self.inner._topics)  # noqa: SLF001 (bytewax keeps them there)
            self._watch = TopicWatch(self.bootstrap, topics, self.check_interval_s).start()
        return self._watch

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _GuardedPartition:
        index, topic = for_part.split("-", 1)
        watch = self.watch()
        topic_id = watch.current(topic)
        saved_id, offset = resume_state if isinstance(resume_state, tuple) else (None, resume_state)
        why = None
        if offset is not None and saved_id is not None and topic_id is not None and saved_id != topic_id:
            why = f"topic {topic} was recreated (id {saved_id} -> {topic_id})"
        elif (
            offset is not None
            and offset > 0
            and (end := self._end(topic, int(index))) is not None
            and offset > end
        ):
            why = f"resume offset {offset} is beyond the end ({end}) of {topic} partition {index}"
        if why is not None:
            self.on_reset(for_part, why)
            offset = OFFSET_BEGINNING

        key = (topic, int(index))
        raise_on_errors = self.inner._raise_on_errors  # noqa: SLF001

        def build(start: int | None) -> StatefulSourcePartition[Any, Any]:
            first = self.inner._starting_offset if start is None else start  # noqa: SLF001
            return _KafkaPart(self._shared(step_id), step_id, key, first, raise_on_errors)

        return _GuardedPartition(build, for_part, topic_id, watch, self.on_reset, offset)

    def _shared(self, step_id: str) -> _SharedConsumer:
        """The consumer of the calling worker (a bytewax worker is a thread): one for all its partitions,
        configured as bytewax's KafkaSource configures its per-partition consumers."""
        key = (step_id, threading.get_ident())
        with self._lock:
            shared = self._consumers.get(key)
            if shared is None:
                inner = self.inner
                config = {
                    "group.id": "BYTEWAX_IGNORED",  # positions are kept by the recovery system
                    "enable.auto.commit": "false",
                    "bootstrap.servers": ",".join(inner._brokers),  # noqa: SLF001
                    "enable.partition.eof": str(not inner._tail),  # noqa: SLF001
                    "statistics.interval.ms": 1000,
                    **inner._add_config,  # noqa: SLF001
                }
                shared = _SharedConsumer(
                    config,
                    inner._batch_size,
                    lambda: self._consumers.pop(key, None),  # noqa: SLF001
                    self.pace,
                    self.wait_for_ticks,
                )
                self._consumers[key] = shared
            return shared

    def _end(self, topic: str, partition: int) -> int | None:
        """The partition's end offset, or None if unknown. (The embedded broker reports it too low by up
        to one produce batch, so a small overshoot is not taken for a gap.)"""
        from confluent_kafka import TopicPartition

        consumer = kafka_clients.consumer("tool", self.bootstrap, group_id="worktool-offset-check")
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except Exception:
            return None
        finally:
            consumer.close()
        return high + END_SLACK


END_SLACK = 1000  # records: more than one produce batch of the gateway
