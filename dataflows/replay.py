"""Replay and archive: run the same flow over a JSONL archive in event time, and dump worktool.raw,
worktool.control and worktool.llm into that archive format. The command-line side (progress bars,
messages) is commands/replay.py.

A replay asks no LLM provider: the archive's recorded answers (`{"kind":"llm_answer",...}` lines, read by
the first pass, `scan_archive`) make the live run's LLM decisions again (docs/architecture.md "Recorded
LLM answers"); without any, the rules and the templates decide."""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import queue
import resource
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson
from bytewax.testing import TestingSink, run_main

from classifiers import build_replay_classifier, call_log_events, close_classifier
from dataflows.collector import tune_collector
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.sources import ArchiveScan, ArchiveSlice, ArchiveSource, load_archive, scan_archive
from infra.archive_io import open_writer
from operators.desk import DeskPolicy, DeskStep
from operators.recordings import Recordings
from operators.sessions import SessionPolicy
from operators.timers import Tick
from sinks.jsonl import JsonlSink, LineSink
from worktool.config import load_config
from worktool.events import MonitorEvent, trusted_event
from worktool.models import ControlRecord, DlqRecord, iso, to_utc
from worktool.settings import Settings, get_settings

log = logging.getLogger(__name__)


# A replay runs without recovery: nothing is resumed from an epoch, so it needs none but the one that ends it.
REPLAY_EPOCH = timedelta(days=365)


class ReplayError(RuntimeError):
    """A replay of several workers that could not finish (a worker failed)."""


@dataclass
class RecordedAnswers:
    """The archive's recorded LLM answers (counted by operation, by the first pass) and how many of the
    classification answers the replay applied (`used`, once it has run; recorded fallbacks are not
    "used": the local result stood live and stands again)."""

    classify: int = 0
    reply: int = 0
    used: int = 0

    @classmethod
    def of(cls, recordings: Recordings) -> RecordedAnswers:
        return cls(classify=recordings.count("classify"), reply=recordings.count("reply"))

    @property
    def total(self) -> int:
        return self.classify + self.reply

    def describe(self) -> str:
        """What the replay does with them, for the command line."""
        if not self.total:
            return "no recorded LLM answers in this archive: classification by the rules, replies from the templates"
        return (
            f"{self.total} recorded LLM answers in this archive ({self.classify} classifications, "
            f"{self.reply} replies): replayed as recorded, no provider asked"
        )


def replay_archive(
    path: Path,
    out: IO[bytes],
    settings: Settings | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    until: datetime | None = None,
    workers: int = 1,
    worker_cpu: list[float] | None = None,
    on_answers: Callable[[RecordedAnswers], None] | None = None,
) -> tuple[int, list[DlqRecord]]:
    """Run the flow over `path` (plain or compressed, infra/archive_io.py), writing monitor events to
    `out`. Returns (records, rejected).
    `until`: after the archive, advance the clock to this time so that what is due by then fires
    (without it, timers pending at the end of the archive stay pending).
    `workers` > 1: that many independent replays in processes, one per slice of the shards
    (`ArchiveSlice`), their events merged by event time: the same events as one worker (per
    conversation in the same order).
    `on_start(total records)` and `on_progress(records done)` report progress; `worker_cpu`, if given,
    receives each worker process's CPU seconds; `on_answers`, if given, receives the archive's recorded
    LLM answers (`RecordedAnswers`) before the replay runs, the same object gets `used` once it has run.
    Raises `ArchiveError` for a corrupt or truncated compressed archive, before any record is replayed."""
    settings = settings or get_settings()
    # Also reads the recorded LLM answers, every record's stamp and, for several workers, where each
    # record goes: the replay does not read a record again for its stamp (`SliceRoutes`).
    scan = scan_archive(path, (settings.shards, max(workers, 1)))
    answers = RecordedAnswers.of(scan.recordings)
    log.info("%s", answers.describe())
    if on_answers is not None:
        on_answers(answers)
    if on_start is not None:
        on_start(scan.records)
    if workers <= 1:
        rejected, answers.used = _replay(path, out, settings, scan, on_progress, until)
        out.flush()
        return scan.records, rejected
    if workers > settings.shards:
        raise ValueError(f"--workers {workers} is more than the flow's {settings.shards} shards")
    with tempfile.TemporaryDirectory(prefix="worktool-replay-") as tmp:
        source = path
        if not scan.in_order:  # slices stream the archive: sort it once, in memory
            log.warning("%s is not in event-time order: sorting its %d records in memory", path, scan.records)
            source = Path(tmp) / "sorted.jsonl"
            with source.open("wb") as f:
                f.writelines(line + b"\n" for _, line in load_archive(path))
            scan = replace(scan, in_order=True, routes=None)  # each worker finds its records itself
        outs = [Path(tmp) / f"events-{i}.jsonl" for i in range(workers)]
        desk = SliceDesk(outs, settings)
        rejected, cpu, answers.used = _run_slices(
            source, outs, settings, scan, on_progress, until, on_poll=desk.feed
        )
        if worker_cpu is not None:
            worker_cpu.extend(cpu)
        desk_events = Path(tmp) / "events-desk.jsonl"
        with desk_events.open("wb") as f:
            desk.finish(f)
        merge_events([*outs, desk_events], out)
    out.flush()
    return scan.records, rejected


def _replay(
    path: Path,
    out: IO[bytes],
    settings: Settings,
    scan: ArchiveScan,
    on_progress: Callable[[int], None] | None,
    until: datetime | None,
    part: ArchiveSlice | None = None,
) -> tuple[list[DlqRecord], int]:
    """One replay (of the archive, or of its slice `part`): (rejected records, recorded LLM
    classifications applied)."""
    config = load_config(settings.config_path)
    classifier = build_replay_classifier(settings, config, scan.recordings)
    rejected: list[DlqRecord] = []
    try:
        source = ArchiveSource(
            path,
            timedelta(seconds=settings.replay_tick_interval_s),
            on_progress=on_progress,
            lateness=timedelta(seconds=settings.allowed_lateness_s),
            until=until,
            part=part,
            scan=scan,
        )
        sinks = FlowSinks(events=[JsonlSink(out)], dlq=[TestingSink(rejected)])
        # No recovery in a replay: no snapshots, and one epoch for the whole archive (bytewax closes an
        # epoch every 10 s of wall time by default, asking every touched key for a snapshot each time).
        options = replace(
            FlowOptions.from_settings(settings, config), recordings=scan.recordings, snapshots=False
        )
        with ExitStack() as stack:
            if part is not None:
                # The desk needs every slice's tasks: each slice writes what it would have fed it.
                desk_out = stack.enter_context(desk_inputs_path(Path(out.name)).open("wb"))
                sinks.desk_inputs.append(LineSink(desk_out, desk_line))
                options = replace(options, desk="collect", gaps=part.marks)
            flow = build_flow(source, sinks, classifier, options, extra_events=call_log_events(classifier))
            run_main(flow, epoch_interval=REPLAY_EPOCH)
    finally:
        close_classifier(classifier)
    return rejected, getattr(classifier, "used", 0)


# -- the desk of a sliced replay ----------------------------------------------------------------------


def desk_inputs_path(events: Path) -> Path:
    return events.with_suffix(".desk")


def desk_line(item: tuple[str, tuple[str, Any]]) -> bytes:
    """One desk input as a line: shard, kind and the item's JSON, tab-separated."""
    _, (shard, value) = item
    if isinstance(value, Tick):  # shards that passed the same tick: comma-separated
        shards = ",".join(shard) if isinstance(shard, tuple) else shard
        return b"%s\ttick\t%s" % (shards.encode(), iso(value.at).encode())
    kind = b"control" if isinstance(value, ControlRecord) else b"event"
    return b"%s\t%s\t%s" % (shard.encode(), kind, value.to_json())


class SliceDesk:
    """The desk of a sliced replay, fed while the slices run: each slice's desk inputs (its shards'
    task events, desk controls and ticks) are read as they are written, whole lines only, each file in
    its own order. The desk's decisions depend on its inputs and their times, never on how the shards'
    inputs interleave (operators/desk.py), so this decides as one worker's desk does, and its work
    overlaps the slices' instead of following it. Every slice ticks every shard (ArchiveSlice); a
    shard's watermark is taken from the slice that owns it, whose ticks come in order with its items."""

    def __init__(self, slices: list[Path], settings: Settings) -> None:
        config = load_config(settings.config_path)
        policy = DeskPolicy(
            config, SessionPolicy(config).alerts, settings.shards, feishu=settings.feishu_configured
        )
        self.desk = DeskStep(policy)
        self.paths = [desk_inputs_path(p) for p in slices]
        self.files: dict[Path, IO[bytes]] = {}
        self.partial: dict[Path, bytes] = {}
        self.written: list[bytes] = []

    def feed(self) -> None:
        """Take what the slices have written since the last call."""
        for index, path in enumerate(self.paths):
            f = self.files.get(path)
            if f is None:
                if not path.exists():
                    continue  # that slice has not started yet
                f = self.files[path] = path.open("rb")
            chunk = f.read()
            if not chunk:
                continue
            *lines, self.partial[path] = (self.partial.get(path, b"") + chunk).split(b"\n")
            for line in lines:
                self._take(index, line)

    def _take(self, index: int, line: bytes) -> None:
        shard, kind, payload = line.split(b"\t", 2)
        key = shard.decode()
        if kind == b"tick":
            owned = tuple(s for s in key.split(",") if int(s) % len(self.paths) == index)
            if not owned:
                return
            item: tuple[Any, Any] = (owned, Tick(to_utc(payload.decode())))
        elif kind == b"control":
            item = (key, ControlRecord.model_validate_json(payload))
        else:
            item = (key, trusted_event(payload))
        self.written += [o.to_json() for o in self.desk.on_item(item) if isinstance(o, MonitorEvent)]

    def finish(self, out: IO[bytes]) -> None:
        """After the slices have ended: the rest of their inputs, then the desk's events to `out`."""
        self.feed()
        for path, rest in self.partial.items():
            if rest:
                raise ReplayError(f"{path.name} ends inside a line: a replay worker did not finish it")
        for f in self.files.values():
            f.close()
        out.writelines(line + b"\n" for line in self.written)


def _slice_main(
    path: Path,
    part: ArchiveSlice,
    out_path: Path,
    settings: Settings,
    scan: ArchiveScan,
    until: datetime | None,
    done: Any,
    results: Any,
) -> None:
    """One worker of a replay of several (a spawned process): its slice, its events to `out_path`,
    its count of records read in `done[part.index]`, then (index, rejected, error, CPU seconds, recorded
    answers applied) on `results`."""

    def progress(n: int) -> None:
        done[part.index] += n

    tune_collector(settings.gc_threshold)
    try:
        with out_path.open("wb") as out:
            rejected, used = _replay(path, out, settings, scan, progress, until, part)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        results.put((part.index, rejected, None, usage.ru_utime + usage.ru_stime, used))
    except BaseException as e:  # reported to the parent, which fails the replay
        results.put((part.index, [], f"{type(e).__name__}: {e}", 0.0, 0))
        raise


def _run_slices(
    path: Path,
    outs: list[Path],
    settings: Settings,
    scan: ArchiveScan,
    on_progress: Callable[[int], None] | None,
    until: datetime | None,
    on_poll: Callable[[], None] | None = None,
) -> tuple[list[DlqRecord], list[float], int]:
    # Processes, not threads: the flow is Python and threads would share one GIL. Spawned, not forked:
    # a fork of a process that runs threads (rich's progress, a classifier's client) is not safe.
    ctx = multiprocessing.get_context("spawn")
    n = len(outs)
    routes, scan = scan.routes, replace(scan, routes=None)  # each worker gets its own
    done = ctx.Array("q", n, lock=False)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_slice_main,
            args=(
                path,
                ArchiveSlice(
                    i, n, settings.shards, marks=i == 0, routes=routes.for_slice(i) if routes else None
                ),
                outs[i],
                settings,
                scan,
                until,
                done,
                results,
            ),
            name=f"worktool-replay-{i}",
            daemon=True,
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    reported: dict[int, tuple[list[DlqRecord], str | None, float, int]] = {}
    seen = 0
    try:
        while len(reported) < n:
            try:
                index, rejected, error, cpu, used = results.get(timeout=0.2)
                reported[index] = (rejected, error, cpu, used)
            except queue.Empty:
                dead = [p for i, p in enumerate(procs) if i not in reported and p.exitcode is not None]
                if dead:
                    raise ReplayError(
                        f"replay worker {dead[0].name} exited with code {dead[0].exitcode}"
                    ) from None
            now = sum(done)
            if on_progress is not None and now > seen:
                on_progress(now - seen)
            seen = now
            if on_poll is not None:
                on_poll()
        failed = [(i, err) for i, (_, err, _, _) in sorted(reported.items()) if err is not None]
        if failed:
            raise ReplayError(f"replay worker {failed[0][0]} failed: {failed[0][1]}")
        for p in procs:
            p.join()
        if on_progress is not None and sum(done) > seen:
            on_progress(sum(done) - seen)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    return (
        [r for i in range(n) for r in reported[i][0]],
        [reported[i][2] for i in range(n)],
        sum(reported[i][3] for i in range(n)),
    )


def _event_time(line: bytes) -> bytes:
    """The event_time of a monitor event line ("...Z" with milliseconds, so it sorts as bytes)."""
    i = line.find(b'"event_time":"')
    return line[i + 14 : line.find(b'"', i + 14)] if i >= 0 else b""


def merge_events(paths: list[Path], out: IO[bytes]) -> None:
    """The events of several replays, merged by event time (each file's own order is kept, so every
    conversation's events stay in order)."""
    with ExitStack() as stack:
        files = [stack.enter_context(p.open("rb")) for p in paths]
        out.writelines(heapq.merge(*files, key=_event_time))


PAUSE_AT = 5000  # records buffered for one partition before it is paused (the merge waits for another)


class _Sorted:
    """A partition's buffer kept sorted by stamp (then arrival), for a partition whose records are only
    roughly in event-time order (`PartitionMerge` `unordered`); the deque calls the merge makes."""

    def __init__(self) -> None:
        self._heap: list[tuple[str, int, bytes]] = []
        self._n = 0

    def append(self, item: tuple[str, bytes]) -> None:
        self._n += 1
        heapq.heappush(self._heap, (item[0], self._n, item[1]))

    def popleft(self) -> tuple[str, bytes]:
        stamp, _, value = heapq.heappop(self._heap)
        return stamp, value

    def __getitem__(self, i: int) -> tuple[str, bytes]:
        assert i == 0
        return self._heap[0][0], self._heap[0][2]

    def __len__(self) -> int:
        return len(self._heap)


class PartitionMerge:
    """A k-way merge by event time of partitions that each arrive in their own order, in pieces.
    `add` buffers a record of a partition; `pop` yields the earliest head while no partition that may
    still send is empty (or everything, when told the rest is not coming). A partition of `unordered`
    (worktool.llm: a live run writes its answers in the order its calls come back, not quite in event
    time) has its buffer sorted, so what arrives out of order within what is buffered comes out in
    order."""

    def __init__(
        self, parts: list[tuple[str, int]], unordered: frozenset[tuple[str, int]] = frozenset()
    ) -> None:
        self.order = {tp: i for i, tp in enumerate(parts)}
        self.buffers: dict[tuple[str, int], deque[tuple[str, bytes]] | _Sorted] = {
            tp: _Sorted() if tp in unordered else deque() for tp in parts
        }
        self.heads: list[tuple[str, int, tuple[str, int]]] = []  # (stamp, partition order, partition)
        self.at_end: set[tuple[str, int]] = set()
        self.starving = set(parts)  # not at its end and nothing buffered: the merge waits for it

    @property
    def done(self) -> bool:
        return len(self.at_end) == len(self.order) and not self.heads

    def end(self, tp: tuple[str, int]) -> None:
        self.at_end.add(tp)
        self.starving.discard(tp)

    def add(self, tp: tuple[str, int], stamp: str, value: bytes) -> int:
        """Buffer one record; returns how many the partition holds."""
        buf = self.buffers[tp]
        if not buf:
            heapq.heappush(self.heads, (stamp, self.order[tp], tp))
        elif isinstance(buf, _Sorted) and stamp < buf[0][0]:  # a new head (heads: one per partition)
            self.heads = [h for h in self.heads if h[2] != tp] + [(stamp, self.order[tp], tp)]
            heapq.heapify(self.heads)
        buf.append((stamp, value))
        self.at_end.discard(tp)
        self.starving.discard(tp)
        return len(buf)

    def pop(self, everything: bool = False) -> Iterator[tuple[tuple[str, int], bytes]]:
        while self.heads and (everything or not self.starving):
            _, _, tp = heapq.heappop(self.heads)
            buf = self.buffers[tp]
            value = buf.popleft()[1]
            if buf:
                heapq.heappush(self.heads, (buf[0][0], self.order[tp], tp))
            elif tp not in self.at_end:
                self.starving.add(tp)
            yield tp, value


def _ended_quietly(consumer: Any, merge: PartitionMerge) -> bool:
    """After a quiet spell: the partitions the merge waits for that are read to their end although no
    end-of-partition event came (librdkafka drops a queued one when the partition is paused) are ended.
    True when the merge then waits for none."""
    from confluent_kafka import TopicPartition

    for tp in list(merge.starving):
        try:
            (position,) = consumer.position([TopicPartition(*tp)])
            _, high = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=2, cached=False)
        except Exception as e:  # the warning and writing what was read remain
            log.info("archive: end of %s-%d not checked: %s", *tp, e)
            return False
        if position.offset >= 0 and position.offset >= high:
            merge.end(tp)
    return not merge.starving


def _stamp_text(value: bytes) -> str:
    try:
        record = orjson.loads(value)
        stamp = record.get("received_at") or record.get("at") or ""
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return stamp if isinstance(stamp, str) else ""


def _partitions(
    consumer: Any, topics: list[str], bootstrap: str, optional: frozenset[str] = frozenset()
) -> list[tuple[str, int]]:
    parts: list[tuple[str, int]] = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            if topic in optional:
                log.warning("archive: topic %s not found on %s: archived without it", topic, bootstrap)
                continue
            raise SystemExit(f"topic {topic} not found on {bootstrap}")
        parts += [(topic, p) for p in sorted(meta.partitions)]
    return parts


def dump_topics(
    bootstrap: str,
    topics: list[str],
    out: IO[bytes] | Path,
    on_record: Callable[[], None] | None = None,
    idle_s: float = 3.0,
    optional: list[str] | tuple[str, ...] = (),
    unordered: list[str] | tuple[str, ...] = (),
) -> int:
    """Every record of `topics` (the raw, the control and the llm topic) in event time (received_at of a
    raw record, at of a control record or a recorded LLM answer), written as it is read: a k-way merge of
    the partitions
    (`PartitionMerge`), holding at most about `PAUSE_AT` records per partition (one that runs ahead is
    paused). `out`: a binary stream, or a file path compressed by its suffix (infra/archive_io.py).
    Reads each partition to its end (partition EOF; Tansu's high watermark is unreliable), then stops;
    after `idle_s` without data it writes what it holds. A partition whose own records are out of
    event-time order stays so in the archive (a replay sorts such an archive in memory; recorded LLM
    answers, which a live run writes in the order its calls come back, are not part of that order).
    A topic of `optional` that does not exist (a broker set up before it was added) is left out, with a
    warning; the partitions of a topic of `unordered` (worktool.llm) are sorted as they are buffered
    (`PartitionMerge`), so they come out in order unless a record arrives later than what is buffered."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    from infra import kafka_clients

    consumer = kafka_clients.consumer("archive", bootstrap)
    written = 0
    with ExitStack() as stack:
        stream = stack.enter_context(open_writer(out)) if isinstance(out, Path) else out
        try:
            parts = _partitions(consumer, topics, bootstrap, frozenset(optional))
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
            merge = PartitionMerge(parts, frozenset(tp for tp in parts if tp[0] in unordered))
            paused: set[tuple[str, int]] = set()
            last_data = time.monotonic()
            while not merge.done:
                idle = time.monotonic() - last_data >= idle_s
                if idle and _ended_quietly(consumer, merge):
                    idle, last_data = False, time.monotonic()
                elif idle:
                    log.warning("archive: no data for %.0f s; writing what was read", idle_s)
                for tp, value in merge.pop(everything=idle or len(merge.at_end) == len(parts)):
                    stream.write(value + b"\n")
                    written += 1
                    if tp in paused and len(merge.buffers[tp]) < PAUSE_AT // 2:
                        consumer.resume([TopicPartition(*tp)])
                        paused.discard(tp)
                if idle:
                    break
                for msg in consumer.consume(1000, 0.5):
                    tp = (msg.topic(), msg.partition())
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            merge.end(tp)
                        continue
                    last_data = time.monotonic()
                    value = msg.value() or b""
                    if merge.add(tp, _stamp_text(value), value) >= PAUSE_AT and tp not in paused:
                        consumer.pause([TopicPartition(*tp)])
                        paused.add(tp)
                    if on_record:
                        on_record()
        finally:
            consumer.close()
    return written
