"""The dataflow, built by a factory that takes its sources and sinks, so the same flow runs on Kafka
(dataflows/main.py), on a JSONL archive (dataflows/replay.py) and in tests.

    sources ─▶ parse + shard (one batch step) ─┬─▶ gaps ──────────────────────────────────┐
                                               └─▶ dedup ─▶ classify ─▶ sessions ─┬─────────┼─▶ route (one batch step)
                                                                                  └─▶ desk ─┘
    route ─┬─▶ monitor events ─▶ Kafka / JSONL / Postgres (typed values, encoded once)
           ├─▶ commands ─▶ worktool.commands (live only)
           ├─▶ DLQ (a bad record; an item a step failed on or ran over its time budget on: it passes
           │        the later keyed steps untouched)
           └─▶ ticks ─▶ heartbeat

Source items are raw-record or control-record bytes (an archive line, a Kafka value of worktool.raw or
worktool.control), `KafkaSourceMessage`s, or `Tick`s.
`dedup` and `sessions` are `op.stateful` steps keyed by a fixed set of shards (dataflows/stateful.py
adapts the pure steps of operators/dedup.py and operators/sessions.py); ticks are broadcast to every
shard so each one's event-time clock moves (operators/timers.py).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink
from pydantic import ValidationError

from dataflows.event_metrics import observe_events
from dataflows.metrics import DLQ_RECORDS, DUPLICATE_REPORTS, MESSAGES_CLASSIFIED
from dataflows.stateful import builder, writer_builder
from dataflows.watchdog import StepBudget
from operators.classify import Classifier
from operators.dedup import DedupStep
from operators.desk import DESK_EVENTS, DESK_KEY, DeskPolicy, DeskStep
from operators.gaps import GAP_KEY, GapStep, SeqMark
from operators.parse import parse_message
from operators.recordings import Recordings
from operators.reply_writer import ReplyGenerator, WriterPolicy
from operators.sessions import SessionPolicy, SessionStep, subject_of
from operators.shard import ClassifiedMessage, ParsedMessage, RobotRecord, RobotSighting, robot_key, shard_for
from operators.timers import Tick
from sinks.overlapped import OverlappedSink
from worktool.config import BusinessConfig
from worktool.events import EVENT_TYPES, MonitorEvent
from worktool.models import (
    RESULT_KINDS,
    AcceptedBody,
    CommandRecord,
    ControlRecord,
    DlqRecord,
    LlmRecord,
    Message,
    MessageRecord,
    RawRecord,
    ResultCallback,
    summarize_errors,
    to_utc,
    utc_now,
)
from worktool.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class FlowSinks:
    """Where the flow's outputs go. Every sink takes the model named beside it."""

    events: list[Sink] = field(default_factory=list)  # MonitorEvent
    dlq: list[Sink] = field(default_factory=list)  # DlqRecord
    heartbeat: list[Sink] = field(default_factory=list)  # Tick
    commands: list[Sink] = field(default_factory=list)  # CommandRecord (never in a replay: it sends nothing)
    desk_inputs: list[Sink] = field(default_factory=list)  # (shard, item) with FlowOptions.desk == "collect"
    llm: list[Sink] = field(default_factory=list)  # LlmRecord: the LLM decisions of a live run (worktool.llm)


@dataclass(frozen=True)
class FlowOptions:
    shards: int = 16
    dedup_window: timedelta = timedelta(seconds=10)
    config: BusinessConfig = field(default_factory=BusinessConfig)
    gap_grace: timedelta = timedelta(seconds=60)  # loss detection (operators/gaps.py)
    # The time budget of a record in each step (dataflows/watchdog.py); None: unguarded (replays).
    budget: StepBudget | None = None
    # False: this flow's gaps step sees nothing (one of the slices of `worktool replay --workers`, whose
    # gateway stamps the slice with the gaps step gets from its source as SeqMark items).
    gaps: bool = True
    # "step": the desk runs here; "collect": its inputs go to `FlowSinks.desk_inputs` (a slice of
    # `worktool replay --workers`: the parent runs one desk over every slice's, dataflows/replay.py).
    desk: Literal["step", "collect"] = "step"
    feishu: bool = False  # the daily report goes to Feishu too (WORKTOOL_FEISHU_WEBHOOK_URL is set)
    # A replay's recorded LLM answers (operators/recordings.py): the classifier and the reply writer use
    # them instead of a provider. Empty: rules and templates.
    recordings: Recordings = field(default_factory=Recordings)
    # Live LLM replies (classifiers/llm/replies.py): the reply writer step after the sessions step turns
    # planned template replies into LLM replies. None: templates (or, in a replay, the recorded replies).
    reply_generator: ReplyGenerator | None = None
    # False: the flow runs without recovery (a replay), so its stateful steps build no snapshots (bytewax
    # asks for them at every epoch all the same, and drops them).
    snapshots: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, config: BusinessConfig) -> FlowOptions:
        return cls(
            shards=settings.shards,
            dedup_window=timedelta(seconds=settings.dedup_window_s),
            config=config,
            gap_grace=timedelta(seconds=settings.gap_grace_s),
            feishu=settings.feishu_configured,
        )

    def session_policy(self) -> SessionPolicy:
        return SessionPolicy(self.config)


def _raw_bytes(item: Any) -> bytes | Tick | None:
    if isinstance(item, Tick | bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if hasattr(item, "err"):  # bytewax KafkaError: a consumer problem, not a bad record
        log.warning("kafka consumer error: %s", item.err)
        return None
    value = getattr(item, "value", None)  # KafkaSourceMessage
    return value if value is not None else b""


Parsed = ParsedMessage | RobotRecord | ControlRecord | Tick | DlqRecord


def parse(item: Any) -> Parsed | None:
    """Bytes (a raw record or a control record) -> typed item, or a DlqRecord that says why. Never raises."""
    return _parse(item)[0]


def parse_all(item: Any) -> list[Parsed | SeqMark]:
    """`parse`, followed by the record's gateway stamp (for the gaps step) when it has one: a record
    that went to the DLQ was processed too, so its number counts as arrived."""
    parsed, mark = _parse(item)
    out: list[Parsed | SeqMark] = [] if parsed is None else [parsed]
    if mark is not None:
        out.append(mark)
    return out


def _mark(record: RawRecord) -> SeqMark | None:
    seq = record.seq
    return None if seq is None else SeqMark(seq.gw, seq.n, record.received_at, tuple(seq.void))


def _lenient_mark(data: bytes) -> SeqMark | None:
    """The stamp of a record that failed validation, if it can be read at all."""
    try:
        value = orjson.loads(data)
        seq, at = value["seq"], to_utc(value["received_at"])
        return SeqMark(str(seq["gw"]), int(seq["n"]), at, tuple(int(v) for v in seq.get("void") or ()))
    except Exception:
        return None


def _parse(item: Any) -> tuple[Parsed | None, SeqMark | None]:
    data = item
    if type(data) is not bytes:  # an archive's line is (most items)
        if isinstance(item, SeqMark):  # a stamp without its record (dataflows/sources.py ArchiveSlice)
            return None, item
        data = _raw_bytes(item)
        if data is None or isinstance(data, Tick):
            return data, None
    if data.startswith(b'{"kind":"message"'):  # as RawRecord.to_json() writes a message: one pass
        try:
            message = MessageRecord.model_validate_json(data)
            fp, msg = parse_message(message)
            return ParsedMessage(fp, msg), _mark(message)
        except (ValidationError, ValueError):
            pass  # anything unusual is read again, the careful way (same result, same DLQ record)
    return _parse_checked(data)


def _parse_checked(data: bytes) -> tuple[Parsed | None, SeqMark | None]:
    record: RawRecord | None = None
    try:
        if data.startswith(b'{"action"'):  # a control record, as ControlRecord.to_json() writes it
            return ControlRecord.model_validate_json(data), None
        record = RawRecord.model_validate_json(data)
        if record.kind == "message":
            fp, msg = parse_message(record)
            return ParsedMessage(fp, msg), _mark(record)
        if record.kind == "accepted":
            return RobotRecord(
                record.kind, record.robot_id, record.received_at, AcceptedBody.model_validate(record.body)
            ), _mark(record)
        result = ResultCallback.model_validate(record.body) if record.kind in RESULT_KINDS else None
        return RobotRecord(record.kind, record.robot_id, record.received_at, result), _mark(record)
    except (ValidationError, ValueError) as e:
        DLQ_RECORDS.labels(record.kind if record else "unreadable").inc()
        mark = _mark(record) if record is not None else _lenient_mark(data)
        return DlqRecord(
            stage="dataflow",
            reason=f"invalid record: {summarize_errors(e) if isinstance(e, ValidationError) else e}",
            received_at=record.received_at if record else utc_now(),
            robot_id=record.robot_id if record else None,
            kind=record.kind if record else None,
            raw=data.decode("utf-8", errors="replace"),
        ), mark


# The fast event path: every bytewax step costs per item, so the head and the tail of the flow are
# one batch step each. A batch step sorts its items into a few tagged lists, one `branch` per list (not
# per item) routes them, and a flat_map unpacks each list again (see benchmarks/README.md, Dataflow).
_TO_SHARDS, _TO_GAPS = "shards", "gaps"
_EVENTS, _COMMANDS, _TICKS, _LLM, _DLQ = "events", "commands", "ticks", "llm", "dlq"
DLQ_KEY = "0"  # the shard a record parse rejected goes through (the keyed steps pass it untouched)


def _route_input(shards: int) -> Callable[[list[Any]], list[tuple[str, list[Any]]]]:
    """Parse a batch of source items; keyed items for the shards (rejected ones included: the keyed
    steps pass DLQ records through), gateway stamps and ticks for the gaps step. Each key gets one list
    of its items in the batch, in order: a keyed step takes one bytewax item per shard and batch, not
    one per record (dataflows/stateful.py `StepLogic`, batched)."""
    all_shards = [str(i) for i in range(shards)]

    def key_of(item: Parsed) -> str:
        if isinstance(item, DlqRecord):
            return DLQ_KEY
        if isinstance(item, ControlRecord):
            return shard_for(subject_of(item)[0], shards)
        return shard_for(robot_key(item.robot_id), shards)  # type: ignore[union-attr]

    def route(batch: list[Any]) -> list[tuple[str, list[Any]]]:
        keyed: defaultdict[str, list[Any]] = defaultdict(list)
        gaps: list[Any] = []
        for raw in batch:
            item, mark = _parse(raw)
            if item is None:
                pass
            elif type(item) is ParsedMessage:
                keyed[shard_for(item.message.session_id, shards)].append(item)
            elif isinstance(item, Tick):
                for s in all_shards:  # every shard's clock must move
                    keyed[s].append(item)
                gaps.append(item)
            else:
                keyed[key_of(item)].append(item)
            if mark is not None:
                gaps.append(mark)
        out = [(_TO_SHARDS, list(keyed.items()))] if keyed else []
        if gaps:
            out.append((_TO_GAPS, [(GAP_KEY, gaps)]))
        return out

    return route


def _route_output(
    extra_events: Callable[[], list[MonitorEvent]] | None,
) -> Callable[[list[tuple[str, Any]]], list[tuple[str, list[Any]]]]:
    """The keyed outputs of the sessions and gaps steps (lists of a key's items, dataflows/stateful.py)
    and of the desk (items), plus the classifier's call logs, sorted into events (counted for the metrics
    here), commands, ticks, recorded LLM decisions and DLQ records."""
    bins: dict[type, int] = {}  # an output type -> its list (by isinstance, once per type)
    kinds = (MonitorEvent, CommandRecord, Tick, LlmRecord, DlqRecord)

    def bin_of(t: type) -> int:
        i = next((i for i, kind in enumerate(kinds) if issubclass(t, kind)), len(kinds))
        bins[t] = i
        return i

    def route(batch: list[tuple[str, Any]]) -> list[tuple[str, list[Any]]]:
        lists: list[list[Any]] = [[], [], [], [], [], []]  # as `kinds`, and the rest (dropped)
        for _key, vs in batch:
            if type(vs) is not list:  # the desk's items come one by one
                vs = (vs,)
            for v in vs:
                i = bins.get(type(v))
                lists[bin_of(type(v)) if i is None else i].append(v)
        events, commands, ticks, llm, dlq, _ = lists
        if extra_events is not None:
            for v in extra_events():
                (dlq if isinstance(v, DlqRecord) else llm if isinstance(v, LlmRecord) else events).append(v)
        if events:
            observe_events(events)
        return [(tag, items) for tag, items in ((_EVENTS, events), (_COMMANDS, commands), (_TICKS, ticks), (_LLM, llm), (_DLQ, dlq)) if items]  # fmt: skip

    return route


def _desk_kinds() -> dict[type, int]:
    """How `_to_desk` treats an output by its type: a typed event envelope's event is its type's
    (worktool/events.py `EVENT_TYPES`), so whether the desk takes it is known by type."""
    kinds: dict[type, int] = {Tick: _TICK}
    for name, envelope in EVENT_TYPES.items():
        kinds[envelope] = _FOR_DESK if name in DESK_EVENTS else _NOT_FOR_DESK
    return kinds


_NOT_FOR_DESK, _TICK, _FOR_DESK, _LOOK = 0, 1, 2, 3
_DESK_KINDS = _desk_kinds()


def _desk_kind(t: type) -> int:
    """An output type `_DESK_KINDS` does not know: ticks, events and control records are looked at one by
    one (a bare MonitorEvent names its event), anything else is not the desk's."""
    kind = _TICK if issubclass(t, Tick) else _LOOK if issubclass(t, MonitorEvent | ControlRecord) else 0
    _DESK_KINDS[t] = kind
    return kind


def _to_desk(batch: list[tuple[str, Any]]) -> list[tuple[str, tuple[str, Any]]]:
    """The sessions step's outputs (a shard's list of them, or one) the desk takes, keyed to it: each
    shard's ticks (its watermark), task events and the control records of the session "desk" (the desk's
    actions and its alert's) that the sessions step forwarded."""
    out: list[tuple[str, tuple[Any, Any]]] = []
    ticked: dict[Tick, list[str]] = {}  # one item for the shards that passed the same tick (idle: all)
    kinds = _DESK_KINDS
    for shard, vs in batch:
        for v in vs if type(vs) is list else (vs,):
            kind = kinds.get(type(v))
            if kind is None:
                kind = _desk_kind(type(v))
            if not kind:
                continue
            if kind == _TICK:
                if (held := ticked.get(v)) is None:
                    ticked[v] = [shard]
                else:
                    held.append(shard)
            elif kind == _FOR_DESK or (
                (isinstance(v, MonitorEvent) and v.event in DESK_EVENTS)
                or (isinstance(v, ControlRecord) and v.session_id == DESK_KEY)
            ):
                if ticked:  # a shard's tick before this item stays before it
                    out.extend((DESK_KEY, (tuple(shards), tick)) for tick, shards in ticked.items())
                    ticked = {}
                out.append((DESK_KEY, (shard, v)))
    out.extend((DESK_KEY, (tuple(shards), tick)) for tick, shards in ticked.items())
    return out


def _tagged(flow_step: str, up: Stream[tuple[str, list[Any]]], tag: str) -> tuple[Stream[Any], Stream[Any]]:
    """(the items of the lists tagged `tag`, the other lists)."""
    split = op.branch(f"{flow_step}_{tag}", up, lambda t: t[0] == tag)
    return op.flat_map(f"{flow_step}_{tag}_items", split.trues, lambda t: t[1]), split.falses


def _classify_batch(
    classifier: Classifier, budget: StepBudget | None = None
) -> Callable[[list[tuple[str, Any]]], list[tuple[str, Any]]]:
    # With a budget each message is classified (and timed) alone, unless the classifier bounds a batch
    # itself (the LLM classifier: its batch deadline; its rules run first, in linear time).
    one_by_one = budget is not None and not getattr(classifier, "bounds_its_batches", False)

    def classify_one(m: Message) -> list[Any]:
        return classifier.classify_batch([m])

    def classify(batch: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
        # A batch of the shards' lists (dataflows/stateful.py, batched): every message of the batch at once.
        messages = [v for _, vs in batch for v in vs if type(v) is Message]
        if one_by_one and messages:
            verdicts = iter([budget.run("classify", m, classify_one)[0] for m in messages])  # type: ignore[union-attr]
        else:
            verdicts = iter(classifier.classify_batch(messages)) if messages else iter(())
        out: list[tuple[str, list[Any]]] = []
        decided: Counter[str] = Counter()
        sightings = 0
        for key, vs in batch:
            items: list[Any] = []
            for v in vs:
                if type(v) is Message:
                    c = next(verdicts)
                    if isinstance(c, DlqRecord):
                        items.append(c)
                        continue
                    decided[c.decided_by] += 1
                    items.append(ClassifiedMessage(v, c))
                else:
                    if isinstance(v, RobotSighting):
                        sightings += 1
                    items.append(v)
            if items:
                out.append((key, items))
        if sightings:
            DUPLICATE_REPORTS.inc(sightings)
        for path, n in decided.items():
            MESSAGES_CLASSIFIED.labels(path).inc(n)
        return out

    return classify


def build_flow(
    sources: Source | list[Source],
    sinks: FlowSinks,
    classifier: Classifier,
    options: FlowOptions | None = None,
    flow_id: str = "worktool",
    extra_events: Callable[[], list[MonitorEvent]] | None = None,
) -> Dataflow:
    """The one dataflow. `extra_events` (e.g. the LLM classifier's call logs) is drained after each
    classify batch and emitted as monitor events."""
    opts = options or FlowOptions()
    budget, snaps = opts.budget, opts.snapshots
    flow = Dataflow(flow_id)
    if not isinstance(sources, list):
        sources = [sources]
    inputs = [op.input(f"input_{i}", flow, src) for i, src in enumerate(sources)]
    raw = inputs[0] if len(inputs) == 1 else op.merge("merge_inputs", *inputs)
    routed = op.flat_map_batch("parse", raw, _route_input(opts.shards))
    keyed, marks = _tagged("parse", routed, _TO_SHARDS)

    # Loss detection: every gateway stamp and every tick to one key (operators/gaps.py).
    grace, policy = opts.gap_grace, opts.session_policy()
    with_gaps = opts.gaps  # False: a slice of `worktool replay --workers` whose gaps step is elsewhere
    marks = op.flat_map("gap_key", marks, lambda t: t[1] if with_gaps else [])
    gaps = op.stateful(
        "gaps", marks,
        builder("gaps", lambda: GapStep(grace, policy.alerts), lambda snap: GapStep.restore(grace, policy.alerts, snap), None, snaps, batched=True),
    )  # fmt: skip

    # DLQ records (parse, dedup, classify) pass the keyed steps untouched and leave in `route`.
    window = opts.dedup_window
    deduped = op.stateful(
        "dedup", keyed,
        builder("dedup", lambda: DedupStep(window), lambda snap: DedupStep.restore(window, snap), budget, snaps, batched=True),
    )  # fmt: skip
    classified = op.flat_map_batch("classify", deduped, _classify_batch(classifier, budget))
    outputs = op.stateful(
        "sessions", classified,
        builder("sessions", lambda: SessionStep(policy), lambda snap: SessionStep.restore(policy, snap), budget, snaps, batched=True),
    )  # fmt: skip
    # LLM replies (operators/reply_writer.py), live or recorded; without either the templates go out as
    # planned and the step is left out.
    generator, recordings = opts.reply_generator, opts.recordings
    if generator is not None or recordings.count("reply"):
        writer_policy = WriterPolicy(opts.config, opts.config.replies.llm_context_messages)

        outputs = op.stateful(
            "replies", outputs, writer_builder(writer_policy, generator, recordings, snaps, batched=True)
        )

    # The after-sales desk (operators/desk.py): one key, fed by every shard's task events, forwarded
    # desk controls and ticks; a slice of `worktool replay --workers` collects them for its parent.
    desk_in = op.flat_map_batch("desk_key", outputs, _to_desk)
    if opts.desk == "step":
        desk_policy = DeskPolicy(opts.config, policy.alerts, opts.shards, feishu=opts.feishu)
        desk = op.stateful(
            "desk", desk_in,
            builder("desk", lambda: DeskStep(desk_policy), lambda snap: DeskStep.restore(desk_policy, snap), None, snaps),
        )  # fmt: skip
        values = op.merge("with_gaps", outputs, gaps, desk)
    else:
        for i, sink in enumerate(sinks.desk_inputs):
            op.output(f"desk_inputs_out_{i}", desk_in, sink)
        values = op.merge("with_gaps", outputs, gaps)
    routed_out = op.flat_map_batch("route", values, _route_output(extra_events))
    events, rest = _tagged("route", routed_out, _EVENTS)
    for i, sink in enumerate(sinks.events):
        if isinstance(sink, OverlappedSink):  # partitioned by conversation: (key, event) pairs
            op.output(f"events_out_{i}", op.flat_map_batch(f"events_keyed_{i}", events, sink.keyed), sink)
        else:
            op.output(f"events_out_{i}", events, sink)
    commands, rest = _tagged("route", rest, _COMMANDS)
    for i, sink in enumerate(sinks.commands):
        op.output(f"commands_out_{i}", commands, sink)
    ticks, rest = _tagged("route", rest, _TICKS)
    for i, sink in enumerate(sinks.heartbeat):
        op.output(f"heartbeat_out_{i}", ticks, sink)
    llm, rest = _tagged("route", rest, _LLM)
    for i, sink in enumerate(sinks.llm):
        op.output(f"llm_out_{i}", llm, sink)
    dlq = op.flat_map("dlq", rest, lambda t: t[1])  # the last tag
    for i, sink in enumerate(sinks.dlq):
        op.output(f"dlq_out_{i}", dlq, sink)
    if not (sinks.events or sinks.heartbeat):
        op.inspect("drain", events, lambda _s, _x: None)
    return flow


__all__ = ["FlowOptions", "FlowSinks", "build_flow", "parse", "parse_all"]
