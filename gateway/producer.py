"""Kafka producing for the gateway: acknowledged produce for asyncio, with the spool as fallback.

`AsyncProducer` wraps one confluent_kafka Producer (idempotent, acks=all). A background thread polls
it; delivery reports complete asyncio futures in batches (one `call_soon_threadsafe` per poll, not per
record). `message.timeout.ms` is the produce timeout, so librdkafka itself fails a record in time for
the gateway to spool it within WorkTool's 3 s; a record that timed out before it was sent (broker down)
is never delivered later (measured: librdkafka drops it from its queue). librdkafka notices timed-out
*in-flight* requests only once a second (measured: reported after 2.0 s instead of 1.5 s), so a guard
fails any future still waiting GUARD_SLACK_S after the produce timeout: the answer stays under ~1.9 s.

`Publisher` is what the webhook calls. Normally it produces directly. When a produce fails it spools
the record and switches to spooling: every later record goes to the spool too (order is kept), until the
drainer has delivered the whole spool.

The hand-off back to direct producing. Records that arrive while the drainer works go to the spool's
tail. Once at most HANDOFF_MAX_RECORDS are left, new requests wait (at most HANDOFF_WAIT_S, then they
go to the tail as well) while the drainer delivers the rest in rounds. It switches back only when a
round ends with the spool empty *and* no append on its way, checked and switched in one step of the
event loop (no await in between): a request registers its append with the SpoolWriter before its first
await (`SpoolWriter.submit`), so it is either seen by that check (and drained by another round) or
comes after the switch and is produced directly, behind everything drained. The drainer also looks at
the spool every DRAIN_CHECK_S whatever woke it: a non-empty spool is always drained, even one left by
a race nobody has thought of yet (logged as a warning).

The drainer probes the broker's metadata with backoff, creates
missing topics (Tansu's memory broker forgets them on restart) and drains segments in order with a
*fresh* producer, which then replaces the old one. Why fresh: measured against Tansu, an idempotent
producer that saw the broker restart either fails fatally (UNKNOWN_PRODUCER_ID) or keeps timing out
forever; a new producer works at once.

Duplicates: a record whose produce timed out while in flight (broker hung after receiving it) may be in
the topic and in the spool (measured with a SIGSTOPped broker: both copies arrive); a crash between a segment's delivery and its deletion redelivers that
segment. Both copies are identical, and the dataflow de-duplicates identical records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException

from gateway import metrics
from gateway.spool import (
    SlotLock,
    Spool,
    SpoolEntry,
    SpoolWriter,
    claim_slot,
    decode_entry,
    encode_entry,
    orphan_slots,
    read_records,
)
from infra import kafka_clients
from infra.kafka_admin import ensure_topics_for
from infra.kafka_clients import KafkaClients
from worktool.logs import quiet_kafka_log
from worktool.settings import Settings

log = logging.getLogger(__name__)
kafka_log = quiet_kafka_log("gateway.kafka", 10.0)  # librdkafka's own log lines


LINGER_MS = 2  # measured 1-5 ms: see benchmarks/README.md, "Webhook"
PROBE_TIMEOUT_S = 1.0
GUARD_SLACK_S = 0.25
GUARD_INTERVAL_S = 0.1
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
# The drainer catches up until at most this many records are spooled, then holds new records back
# (at most HANDOFF_WAIT_S) while it delivers the rest, so nothing overtakes a spooled record.
HANDOFF_MAX_RECORDS = 1000
HANDOFF_WAIT_S = 0.5
# The drainer checks the spool at least this often, whether or not a failed produce woke it.
DRAIN_CHECK_S = 1.0
# Errors that no retry can fix: the record is set aside (rejected.jsonl) instead of blocking the spool.
PERMANENT_ERRORS = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_TIMESTAMP,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_REQUIRED_ACKS,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._INVALID_ARG,
}


class DeliveryError(Exception):
    """The broker did not acknowledge a record."""

    def __init__(self, code: str, error: KafkaError | None = None):
        super().__init__(code if error is None else f"{code}: {error.str()}")
        self.code = code  # low-cardinality label for metrics
        self.permanent = error is not None and error.code() in PERMANENT_ERRORS


def producer_config(settings: Settings) -> dict[str, Any]:
    """The gateway role of the Kafka client factory (infra/kafka_clients.py): idempotent, acks=all,
    message.timeout.ms = WORKTOOL_PRODUCE_TIMEOUT_S, no topic auto-creation (a metadata request would
    make Tansu create a topic with one partition; missing topics are created by the drainer),
    message.max.bytes of the configuration's RecordLimits. LINGER_MS is read here so the webhook
    benchmark can vary it."""
    return KafkaClients(settings).producer_config("gateway", **{"linger.ms": LINGER_MS})


class AsyncProducer:
    """One librdkafka producer whose deliveries complete asyncio futures."""

    def __init__(self, config: dict[str, Any], *, guard_s: float):
        self._loop = asyncio.get_running_loop()
        self._guard_s = guard_s
        self._producer = kafka_clients.producer(
            "gateway", "", config=config, error_cb=self._on_error, logger=kafka_log
        )
        # Futures still waiting for their report, oldest first (dicts keep insertion order).
        self._waiting: dict[asyncio.Future[None], float] = {}
        self._reports: list[tuple[asyncio.Future[None], KafkaError | None]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._thread.start()
        self._guard_task = self._loop.create_task(self._expire_forever())

    def send(self, topic: str, key: str | None, value: bytes) -> asyncio.Future[None]:
        """Enqueue a record; the future completes when the broker acknowledged it (or fails with
        DeliveryError). Raises DeliveryError at once if librdkafka refuses the record."""
        future: asyncio.Future[None] = self._loop.create_future()
        try:
            self._producer.produce(
                topic, value, key, on_delivery=lambda err, _msg: self._reports.append((future, err))
            )
        except BufferError as e:
            raise DeliveryError("queue_full") from e
        except KafkaException as e:
            raise DeliveryError(e.args[0].name(), e.args[0]) from e
        self._waiting[future] = self._loop.time() + self._guard_s
        return future

    async def aclose(self, timeout_s: float) -> None:
        """Wait up to timeout_s for records in flight, then stop. Nothing is purged: a purged record
        could still be in the topic and would be spooled a second time."""
        self._stopping.set()
        await asyncio.to_thread(self._thread.join)
        # flush() serves the remaining reports in this thread now that the poll thread is gone.
        remaining = await asyncio.to_thread(self._producer.flush, timeout_s)
        if remaining:
            log.warning("closing a producer with %d unacknowledged records", remaining)
        self._guard_task.cancel()
        batch, self._reports = self._reports, []
        self._resolve(batch)
        for future in list(self._waiting):
            self._fail(future, DeliveryError("closed"))

    # -- callbacks ------------------------------------------------------------------------------

    def _on_error(self, error: KafkaError) -> None:  # poll thread
        # Connection errors are expected during an outage (the spool handles them); a fatal error
        # fails every record, which sends them to the spool and the drainer replaces this producer.
        if error.fatal():
            log.error("kafka producer fatal error: %s", error.str())

    def _poll_forever(self) -> None:  # poll thread
        while not self._stopping.is_set():
            try:
                self._producer.poll(0.05)
            except Exception:  # a fatal error may surface here; the guard fails what is lost
                log.exception("kafka producer poll failed")
                self._stopping.wait(0.5)
            if self._reports:
                batch, self._reports = self._reports, []
                try:
                    self._loop.call_soon_threadsafe(self._resolve, batch)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    return

    def _resolve(self, batch: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:  # loop
        for future, err in batch:
            self._waiting.pop(future, None)
            if future.done():
                continue
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(DeliveryError(err.name(), err))

    def _fail(self, future: asyncio.Future[None], error: DeliveryError) -> None:
        self._waiting.pop(future, None)
        if not future.done():
            future.set_exception(error)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(GUARD_INTERVAL_S)
            now = self._loop.time()
            expired = []
            for future, deadline in self._waiting.items():  # oldest first: stop at the first live one
                if deadline > now:
                    break
                expired.append(future)
            for future in expired:
                self._fail(future, DeliveryError("no_delivery_report"))


class SpoolUnavailable(Exception):
    """Neither the broker nor the spool took the record: the only case the webhook answers 503."""


class Publisher:
    """Acknowledged produce with a durable spool fallback and an in-order drainer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._guard_s = settings.produce_timeout_s + GUARD_SLACK_S
        self._slot: SlotLock | None = None
        self._orphans: list[tuple[SlotLock, Spool]] = []
        self._spool: Spool | None = None
        self._writer: SpoolWriter | None = None
        self._producer: AsyncProducer | None = None
        self._admin: Any = None  # an AdminClient (infra.kafka_clients)
        self._spooling = False
        # Set while the drainer delivers the last spooled records; new records wait for it (briefly).
        self._handoff: asyncio.Event | None = None
        self._need_drain = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()  # replaced producers finishing their records
        self._acked: dict[Path, set[int]] = {}  # per segment: records delivered by an earlier attempt

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        bootstrap = self.settings.kafka_bootstrap_servers
        if not bootstrap:
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
        base = self.settings.spool_dir
        self._slot = await asyncio.to_thread(claim_slot, base)
        self._spool = await asyncio.to_thread(Spool, self._slot.directory)
        self._writer = SpoolWriter(self._spool)
        for lock in await asyncio.to_thread(orphan_slots, base, self._slot.directory):
            self._orphans.append((lock, await asyncio.to_thread(Spool, lock.directory)))
        # No auto-creation from metadata requests here either (see producer_config).
        self._admin = kafka_clients.admin(bootstrap, logger=kafka_log)
        self._producer = AsyncProducer(producer_config(self.settings), guard_s=self._guard_s)
        leftover = self.spool_depth
        if leftover:
            # Left by a crash: drain it before anything new, which queues behind it.
            log.warning("spool holds %d records from a previous run; draining them first", leftover)
            self._enter_spooling()
        metrics.SPOOL_DEPTH.set(leftover)
        self._drainer = asyncio.get_running_loop().create_task(self._drain_forever())

    async def stop(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._producer is not None:
            await self._producer.aclose(self._guard_s)
        if self._writer is not None:
            self._writer.close()
        if self._spool is not None:
            self._spool.close()
        for lock, spool in self._orphans:
            spool.close()
            lock.release()
        if self._slot is not None:
            self._slot.release()

    # -- the webhook's side ---------------------------------------------------------------------

    @property
    def spooling(self) -> bool:
        return self._spooling

    @property
    def spool_depth(self) -> int:
        own = self._spool.depth if self._spool else 0
        return own + sum(spool.depth for _, spool in self._orphans)

    async def publish(self, topic: str, key: str | None, value: bytes) -> bool:
        """Deliver a record to the broker, or to the spool when the broker does not acknowledge it in
        time. True if the broker has it, False if spooled. Raises SpoolUnavailable if neither."""
        if self._handoff is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._handoff.wait(), HANDOFF_WAIT_S)
        if not self._spooling:
            assert self._producer is not None
            try:
                await self._producer.send(topic, key, value)
                return True
            except DeliveryError as e:
                metrics.PRODUCE_ERRORS.labels(e.code).inc()
                log.warning("produce to %s failed (%s); spooling", topic, e)
                self._enter_spooling()
        await self.spool(topic, key, value)
        return False

    async def spool(self, topic: str, key: str | None, value: bytes) -> None:
        """Append a record to the spool (durable when this returns)."""
        assert self._writer is not None
        # Both before the first await: later records must queue behind this one, and the drainer must
        # see this append (writer busy) until it is counted in the spool's depth.
        self._enter_spooling()
        durable = self._writer.submit(encode_entry(SpoolEntry(topic, key, value)))
        try:
            await durable
        except Exception as e:
            log.error("spool write failed: %r", e)
            raise SpoolUnavailable(str(e)) from e
        metrics.SPOOLED.inc()
        metrics.SPOOL_DEPTH.set(self.spool_depth)

    async def probe(self) -> bool:
        """Cheap liveness check: does the broker answer a metadata request?"""
        assert self._admin is not None
        try:
            await asyncio.to_thread(self._admin.list_topics, timeout=PROBE_TIMEOUT_S)
            return True
        except Exception:
            return False

    def _enter_spooling(self) -> None:
        self._spooling = True
        self._need_drain.set()

    # -- the drainer ----------------------------------------------------------------------------

    async def _drain_forever(self) -> None:
        delay = BACKOFF_MIN_S
        while True:
            if not self._spooling:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._need_drain.wait(), DRAIN_CHECK_S)
                self._need_drain.clear()  # what to do is decided by the state, not by who woke us
            if not self._spooling:
                depth = self.spool_depth
                if not depth:
                    continue
                # Never expected: a record spooled while producing directly. Queue new records behind
                # it again and drain, rather than leave it until the next outage.
                log.warning("%d records in the spool while producing directly; draining them", depth)
                self._spooling = True
            try:
                drained = await self._recover()
            except Exception as e:
                log.warning("spool drain attempt failed: %r", e)
                drained = False
            if drained:
                delay = BACKOFF_MIN_S
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _recover(self) -> bool:
        """One attempt to bring the broker up to date. True once the spool is empty and records go
        straight to the broker again."""
        if not await self.probe():
            return False
        await asyncio.to_thread(ensure_topics_for, self.settings, timeout_s=5.0)
        producer = AsyncProducer(producer_config(self.settings), guard_s=self._guard_s)
        drained = False
        try:
            drained = await self._drain_with(producer)
        finally:
            if not drained:
                await producer.aclose(0)
        return drained

    async def _drain_with(self, producer: AsyncProducer) -> bool:
        assert self._spool is not None and self._writer is not None
        for lock, spool in list(self._orphans):
            if not await self._drain_spool(spool, producer):
                return False
            spool.close()
            lock.release()
            self._orphans.remove((lock, spool))
        # Catch up while records keep arriving, then hold new ones back for one last short round.
        while self._spool.depth > HANDOFF_MAX_RECORDS:
            if not await self._drain_spool(self._spool, producer):
                return False
        handoff = self._handoff = asyncio.Event()
        try:
            while True:
                await self._writer.wait_idle()
                if not await self._drain_spool(self._spool, producer):
                    return False
                # From this check to the switch there is no await: an append registered before it
                # makes the writer busy or the depth non-zero (another round), one registered after
                # it sees `_spooling` False and goes to the broker behind everything drained.
                if self._writer.busy or self.spool_depth:
                    continue  # requests that waited HANDOFF_WAIT_S went to the tail meanwhile
                old, self._producer = self._producer, producer
                self._spooling = False
                break
        finally:
            self._handoff = None
            handoff.set()
        metrics.SPOOL_DEPTH.set(self.spool_depth)
        log.info("spool drained; producing directly again")
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.aclose(self._guard_s))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return True

    async def _drain_spool(self, spool: Spool, producer: AsyncProducer) -> bool:
        """Deliver every sealed segment of a spool, oldest first."""
        await asyncio.to_thread(spool.seal)
        for segment in spool.sealed_segments():
            if not await self._drain_segment(spool, segment, producer):
                return False
        return True

    async def _drain_segment(self, spool: Spool, segment: Path, producer: AsyncProducer) -> bool:
        lines = await asyncio.to_thread(read_records, segment)
        acked = self._acked.setdefault(segment, set())
        sent: list[tuple[int, SpoolEntry, asyncio.Future[None]]] = []
        complete = True
        for index, line in enumerate(lines):
            if index in acked:
                continue
            try:
                entry = decode_entry(line)
            except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                await self._reject(spool, line, f"unreadable spool line: {e}")
                acked.add(index)
                continue
            if entry.topic not in self.settings.all_topics:
                # Spooled under another topic configuration: that topic may never exist again, and
                # waiting for it would block everything behind it.
                await self._reject(spool, line, f"topic {entry.topic} is no longer configured")
                acked.add(index)
                continue
            try:
                sent.append((index, entry, await self._send_when_room(producer, entry)))
            except DeliveryError as e:
                if e.permanent:
                    await self._reject(spool, line, str(e))
                    acked.add(index)
                    continue
                complete = False
                break
        results = await asyncio.gather(*(future for _, _, future in sent), return_exceptions=True)
        for (index, entry, _), result in zip(sent, results, strict=True):
            if result is None:
                acked.add(index)
            elif isinstance(result, DeliveryError) and result.permanent:
                await self._reject(spool, encode_entry(entry), str(result))
                acked.add(index)
            else:
                complete = False
        metrics.DRAINED.inc(sum(1 for result in results if result is None))
        if not complete:
            log.warning("spool segment %s: %d of %d records delivered; retrying later",
                        segment.name, len(acked), len(lines))  # fmt: skip
            return False
        await asyncio.to_thread(spool.remove, segment)
        self._acked.pop(segment, None)
        metrics.SPOOL_DEPTH.set(self.spool_depth)
        return True

    @staticmethod
    async def _send_when_room(producer: AsyncProducer, entry: SpoolEntry) -> asyncio.Future[None]:
        while True:
            try:
                return producer.send(entry.topic, entry.key, entry.value)
            except DeliveryError as e:
                if e.code != "queue_full":
                    raise
                await asyncio.sleep(0.01)  # let deliveries free the local queue

    async def _reject(self, spool: Spool, line: bytes, reason: str) -> None:
        """Set aside a record the broker will never take, so it does not block the spool forever."""
        path = spool.directory / "rejected.jsonl"
        log.error("spooled record rejected for good (%s); kept in %s", reason, path)
        metrics.REJECTED.inc()
        record = orjson.dumps({"reason": reason, "line": line.decode("utf-8", "replace")}) + b"\n"

        def write() -> None:
            with path.open("ab") as f:
                f.write(record)
                f.flush()
                os.fsync(f.fileno())

        await asyncio.to_thread(write)
