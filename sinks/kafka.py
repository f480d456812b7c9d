"""Kafka sinks for boundary models (MonitorEvent, DlqRecord): `to_json()` values, keyed so that one
session's events stay in order on one partition, and the dead-letter writer the other sinks share.

At least once, and never stopped by one record or by an outage (`KafkaWriter`):
- a record the broker will never take (too large, unserialisable, refused as invalid) is a poison
  record: it goes to the DLQ topic as a DlqRecord (stage "sink:kafka") and the batch goes on;
- anything else that fails is waited out (sinks/retry.py), for any length of time, and sent again with
  a *fresh* producer: after a broker restart an idempotent producer either fails fatally
  (PRODUCER_FENCED, UNKNOWN_PRODUCER_ID) or keeps timing out (measured against Tansu, as the gateway's
  spool drainer found); a new one works at once. A record whose report was lost may then be written
  twice, which every consumer tolerates (idempotent sinks, de-duplication).

Only failed records are reported by the producer (delivery.report.only.error): an acknowledged record
costs no Python call (`KafkaWriter._attempt` says why no record is lost that way).

`message.max.bytes` comes from the configuration's RecordLimits, like every producer's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client import Counter

from infra import kafka_clients
from sinks.retry import Backoff, Waiter, describe_error
from worktool.models import DlqRecord, utc_now
from worktool.settings import RecordLimits, default_limits

log = logging.getLogger(__name__)


FLUSH_SLACK_S = 5.0  # librdkafka notices timed-out requests about once a second
START_TIMEOUT_S = 5.0  # how long a sink waits for the broker when it starts (then it goes on anyway)
# Errors no retry can fix: the record is set aside (dead-lettered), not waited for.
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError._INVALID_ARG,
    }
)

DEAD_LETTERS = Counter(
    "worktool_sink_dead_letters_total", "Records a sink could not write and sent to the DLQ", ["stage"]
)
DEAD_LETTERS_LOST = Counter(
    "worktool_sink_dead_letters_lost_total",
    "Records a sink could neither write nor dead-letter (logged with their content)",
    ["stage"],
)
PRODUCERS_REPLACED = Counter(
    "worktool_sink_producers_replaced_total", "Kafka producers a sink replaced after a failure", ["sink"]
)


def producer_config(bootstrap: str, limits: RecordLimits | None = None, **extra: Any) -> dict[str, Any]:
    """The sink role of the Kafka client factory (infra/kafka_clients.py): idempotent, acks=all, lz4,
    message.timeout.ms of 10 s (an outage shows up and is waited out here instead of records sitting in
    librdkafka's queue for five minutes), no topic auto-creation, message.max.bytes of `limits`."""
    return kafka_clients.producer_config("sink", bootstrap, limits=limits or default_limits(), **extra)


def event_key(item: Any) -> bytes | None:
    key = getattr(item, "session_id", None) or getattr(item, "robot_id", None)
    return key.encode() if isinstance(key, str) and key else None


@dataclass(frozen=True)
class Poisoned:
    """A record that cannot be written, and why."""

    item: Any
    reason: str


def describe_item(item: Any) -> str:
    """The item as text for a DLQ record: its JSON when it has one, else the most faithful fallback."""
    for dump in ("to_json", "model_dump_json"):
        try:
            value = getattr(item, dump)()
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        except Exception:  # the very reason it is dead-lettered may be that it cannot be serialised
            continue
    return repr(item)


def dead_letter(stage: str, item: Any, reason: str) -> DlqRecord:
    robot_id = getattr(item, "robot_id", None)
    kind = getattr(item, "event", None) or getattr(item, "kind", None)
    at = getattr(item, "event_time", None) or getattr(item, "received_at", None)
    return DlqRecord(
        stage=stage,
        reason=reason,
        received_at=at if at is not None and getattr(at, "tzinfo", None) else utc_now(),
        robot_id=robot_id if isinstance(robot_id, str) else None,
        kind=kind if isinstance(kind, str) else None,
        raw=describe_item(item),
    )


class _Pending:
    """No delivery report yet."""


PENDING = _Pending()


class KafkaWriter:
    """Writes batches of models to one topic: blocks until every record is acknowledged or set aside as
    poison (returned to the caller); waits out outages; replaces its producer after a failed attempt."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        *,
        record_max_bytes: int,
        key_fn: Callable[[Any], bytes | None] = event_key,
        backoff: Backoff | None = None,
    ) -> None:
        self.topic = topic
        self.name = f"kafka:{topic}"
        self._config = config
        self._record_max_bytes = record_max_bytes
        self._key_fn = key_fn
        self._backoff = backoff or Backoff()
        self._flush_timeout_s = int(config.get("message.timeout.ms", 300_000)) / 1000 + FLUSH_SLACK_S
        self._producer: Producer | None = None
        self._fatal: KafkaError | None = None
        self._failures: list[tuple[KafkaError, bytes | None]] | None = None  # of the attempt under way

    def write(self, items: list[Any]) -> list[Poisoned]:
        poisoned: list[Poisoned] = []
        pending: list[tuple[Any, bytes | None, bytes]] = []
        for item in items:
            try:
                value = self._encode(item)
            except Exception as e:
                poisoned.append(Poisoned(item, f"cannot serialise for {self.topic}: {describe_error(e)}"))
                continue
            if len(value) > self._record_max_bytes:
                reason = f"record of {len(value)} bytes exceeds the limit of {self._record_max_bytes}"
                poisoned.append(Poisoned(item, f"{reason} ({self.topic})"))
                continue
            pending.append((item, self._key(item), value))
        with Waiter(self.name, self._backoff) as waiter:
            while pending:
                pending, refused, error = self._attempt(pending)
                poisoned.extend(refused)
                if pending:
                    assert error is not None
                    self._replace_producer(error)
                    waiter.wait(error)
        if self._fatal is not None:  # all delivered, but this producer will fail every later record
            self._replace_producer(KafkaException(self._fatal))
        return poisoned

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Create the producer now and let it connect, instead of on the first write: an idempotent
        producer's first record waits about 500 ms for its producer id (measured against Tansu), and
        a bytewax sink's write blocks the whole worker. Best effort: a broker that is not there yet
        is waited for by the first write, as before."""
        producer = self._current_producer()
        try:
            producer.list_topics(timeout=timeout_s)  # all topics: never creates one
        except KafkaException as e:
            log.info("%s: broker not reachable at start (%s); connecting on the first write", self.name, e)

    def close(self) -> None:
        if self._producer is not None:
            remaining = self._producer.flush(10)
            if remaining:
                log.warning("%s: closed with %d records unacknowledged", self.name, remaining)
            self._producer = None

    # -- one attempt ----------------------------------------------------------------------------

    def _encode(self, item: Any) -> bytes:
        if isinstance(item, DlqRecord):  # a dead letter always fits: its raw text is cut if need be
            return item.to_json_within(self._record_max_bytes)
        value = item.to_json()
        if not isinstance(value, bytes):
            raise TypeError(f"to_json() returned {type(value).__name__}, not bytes")
        return value

    def _key(self, item: Any) -> bytes | None:
        try:
            return self._key_fn(item)
        except Exception:  # a key only places the record; without one it still gets written
            return None

    def _attempt(
        self, pending: list[tuple[Any, bytes | None, bytes]]
    ) -> tuple[list[tuple[Any, bytes | None, bytes]], list[Poisoned], Exception | None]:
        """Send `pending` once. Returns (to send again, poison records, the first transient error).

        Only failed records are reported (delivery.report.only.error, set on every producer of this
        writer): a success costs no Python call, no Message object and no closure (measured ~15 % of the
        sink's time in the main thread, benchmarks/README.md "Issue 14: the live path, profiled"). Once
        flush() has emptied the producer, every record has been acknowledged or has reported its error.
        Records still queued or in flight after the timeout are purged, which reports each of them as
        failed (PURGE_QUEUE, PURGE_INFLIGHT), so they are sent again; if even that leaves some
        unaccounted for, the whole attempt is sent again (a duplicate, never a loss)."""
        reports = self._send(pending)
        again: list[tuple[Any, bytes | None, bytes]] = []
        refused: list[Poisoned] = []
        error: Exception | None = None
        for entry, report in zip(pending, reports, strict=True):
            if report is None:
                continue
            if isinstance(report, _Pending):
                again.append(entry)
                error = error or TimeoutError(f"no delivery report within {self._flush_timeout_s:.0f} s")
            elif report.code() in PERMANENT_ERRORS and not report.fatal():
                refused.append(Poisoned(entry[0], f"refused by Kafka ({self.topic}): {report.str()}"))
            else:
                again.append(entry)
                error = error or KafkaException(report)
        if self._fatal is not None:
            error = KafkaException(self._fatal)
        return again, refused, error

    def _send(self, pending: list[tuple[Any, bytes | None, bytes]]) -> list[KafkaError | None | _Pending]:
        """Produce `pending`, wait for the acknowledgements; each record's outcome: None (acknowledged),
        its error, or PENDING (no outcome known: sent again)."""
        producer = self._current_producer()
        failures: list[tuple[KafkaError, bytes | None]] = []
        self._failures = failures
        reports: list[KafkaError | None | _Pending] = [None] * len(pending)
        produce, topic = producer.produce, self.topic
        for index, (_item, key, value) in enumerate(pending):
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    producer.poll(0.1)
                except KafkaException as e:  # refused before sending (too large, fatal state, ...)
                    reports[index] = e.args[0]
                    break
        unaccounted = producer.flush(self._flush_timeout_s)
        if unaccounted:  # not acknowledged in time: purged, so each reports itself as failed
            try:
                producer.purge(in_queue=True, in_flight=True, blocking=True)
                unaccounted = producer.flush(FLUSH_SLACK_S)
            except KafkaException:  # a producer in a fatal state may refuse even this
                pass
        self._failures = None
        if unaccounted or not _assign_failures(pending, reports, failures):
            # Some records neither acknowledged nor reported: all but the refused ones are sent again.
            return [PENDING if r is None else r for r in reports]
        return reports

    def _on_delivery(self, error: KafkaError | None, msg: Any) -> None:
        """The producer's delivery report callback: with delivery.report.only.error, failures only."""
        if error is not None and self._failures is not None:
            self._failures.append((error, msg.value()))

    # -- the producer ---------------------------------------------------------------------------

    def _current_producer(self) -> Producer:
        if self._producer is None:
            self._fatal = None
            # Only failures are reported, to the writer's one callback (see _attempt).
            config = {**self._config, "delivery.report.only.error": True, "on_delivery": self._on_delivery}
            self._producer = kafka_clients.producer("sink", "", config=config, error_cb=self._on_error)
        return self._producer

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():  # every later record of this producer fails: replace it
            log.error("%s: producer fatal error: %s", self.name, error.str())
            self._fatal = error

    def _replace_producer(self, reason: Exception) -> None:
        """Drop the producer after a failed attempt: the next one starts clean (see the module doc)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.flush(0)
        except KafkaException:  # a producer in a fatal state may refuse even this; it is dropped anyway
            pass
        PRODUCERS_REPLACED.labels(self.name).inc()
        log.info("%s: replacing the producer after %s", self.name, describe_error(reason))


def _assign_failures(
    pending: list[tuple[Any, bytes | None, bytes]],
    reports: list[KafkaError | None | _Pending],
    failures: list[tuple[KafkaError, bytes | None]],
) -> bool:
    """Each failure report to the record it is about (by its bytes: the callback gets no index; equal
    records are interchangeable); False if a report names no record still without an outcome."""
    if not failures:
        return True
    by_value: dict[bytes, list[int]] = {}
    for index, (_item, _key, value) in enumerate(pending):
        if reports[index] is None:
            by_value.setdefault(value, []).append(index)
    for error, value in failures:
        indexes = by_value.get(value) if value is not None else None
        if not indexes:
            return False
        reports[indexes.pop()] = error
    return True


# ---------------------------------------------------------------------------------------------
# Dead letters


@dataclass(frozen=True)
class DeadLetters:
    """Where sinks send their poison records: the DLQ topic, with the same producer settings as every
    other producer. A plain description; each sink partition opens its own writer."""

    bootstrap: str
    topic: str
    limits: RecordLimits = field(default_factory=default_limits)
    backoff: Backoff = field(default_factory=Backoff)

    def open(self) -> DeadLetterWriter:
        writer = KafkaWriter(
            producer_config(self.bootstrap, self.limits),
            self.topic,
            record_max_bytes=self.limits.record_max_bytes,
            backoff=self.backoff,
        )
        return DeadLetterWriter(writer)


class DeadLetterWriter:
    def __init__(self, writer: KafkaWriter) -> None:
        self._writer = writer

    def send(self, stage: str, poisoned: list[Poisoned]) -> None:
        """Write a DlqRecord for each poison record; blocks (waits out an outage) until they are acked."""
        records = [dead_letter(stage, p.item, p.reason) for p in poisoned]
        for record in records:
            log.error("%s: record sent to the DLQ: %s", stage, record.reason)
        lost = self._writer.write(records)
        DEAD_LETTERS.labels(stage).inc(len(records) - len(lost))
        for p in lost:
            report_lost(stage, p.item, p.reason)

    def close(self) -> None:
        self._writer.close()


def report_lost(stage: str, item: Any, reason: str) -> None:
    """A record that can be neither written nor dead-lettered: the log is all that is left of it."""
    DEAD_LETTERS_LOST.labels(stage).inc()
    log.error("%s: record dropped (%s): %s", stage, reason, describe_item(item)[:10_000])


# ---------------------------------------------------------------------------------------------
# The bytewax sink


class _KafkaPartition(StatelessSinkPartition[Any]):
    def __init__(self, writer: KafkaWriter, dead_letters: DeadLetterWriter | None) -> None:
        self._writer = writer
        self._dead_letters = dead_letters

    def write_batch(self, items: list[Any]) -> None:
        poisoned = self._writer.write(items)
        if not poisoned:
            return
        if self._dead_letters is not None:
            self._dead_letters.send("sink:kafka", poisoned)
        else:  # this sink writes the DLQ itself: a dead letter it cannot write has nowhere else to go
            for p in poisoned:
                report_lost("sink:kafka", p.item, p.reason)

    def close(self) -> None:
        self._writer.close()
        if self._dead_letters is not None:
            self._dead_letters.close()


class ModelKafkaSink(DynamicSink[Any]):
    """Models -> `topic`. `dead_letters`: where poison records go (None for the DLQ sink itself)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        limits: RecordLimits | None = None,
        *,
        key_fn: Callable[[Any], bytes | None] = event_key,
        dead_letters: DeadLetters | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.limits = limits or default_limits()
        self.config = producer_config(bootstrap, self.limits)
        self.topic = topic
        self.key_fn = key_fn
        self.dead_letters = dead_letters
        self.backoff = backoff or Backoff()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        writer = KafkaWriter(
            self.config,
            self.topic,
            record_max_bytes=self.limits.record_max_bytes,
            key_fn=self.key_fn,
            backoff=self.backoff,
        )
        writer.start()
        return _KafkaPartition(writer, self.dead_letters.open() if self.dead_letters else None)
