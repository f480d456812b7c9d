"""Writes the outside world's answers to worktool.raw as `accepted` raw records, waiting for the broker's
acknowledgement (acks=all): only then may the dispatcher mark the commands done and commit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message

from dispatcher import metrics
from infra import kafka_clients
from worktool.models import AcceptedBody, RawRecord, raw_record_key, utc_now
from worktool.settings import RecordLimits

log = logging.getLogger(__name__)

# How long to keep trying once a stop was asked for, before giving up (the claims keep the answer:
# a restarted dispatcher writes the record then).
GIVE_UP_AFTER_STOP_S = 30.0


class RecordNotWritten(RuntimeError):
    """The broker did not take the accepted record and the dispatcher is stopping."""


class AcceptedRecorder:
    def __init__(self, bootstrap: str, topic: str, limits: RecordLimits | None = None) -> None:
        self._topic = topic
        # The recorder role (infra/kafka_clients.py): idempotent, acks=all, linger 0, and
        # message.timeout.ms=5000: an unreachable broker surfaces as an error within 5 s, and the record
        # is sent again by a fresh producer (a stuck idempotent one after a broker that came back empty
        # never recovers); a copy that did arrive is byte-identical and dropped by the dataflow's dedup.
        self._config = kafka_clients.producer_config("recorder", bootstrap, limits=limits)
        self._producer = kafka_clients.producer("recorder", bootstrap, config=self._config)

    def _replace_producer(self, why: object) -> None:
        """An idempotent producer that saw the broker restart (empty) fails fatally, e.g. with
        OUT_OF_ORDER_SEQUENCE_NUMBER (measured with the embedded broker); a fresh one works at once."""
        log.error("kafka producer failed for good (%s); replacing it", why)
        self._producer = kafka_clients.producer("recorder", "", config=self._config)

    def record(self, robot_id: str, body: AcceptedBody, stopping: Callable[[], bool]) -> RawRecord:
        """Write one accepted record and wait for its acknowledgement, retrying until the broker takes
        it; raises RecordNotWritten when stopping and the broker still does not answer."""
        record = RawRecord(
            kind="accepted", robot_id=robot_id, received_at=utc_now(), body=body.model_dump(mode="json")
        )
        value = record.to_json()
        key = raw_record_key("accepted", robot_id, record.body).encode()
        stop_seen_at: float | None = None
        while True:
            outcome: list[KafkaError | None] = []

            def delivered(err: KafkaError | None, _msg: Message, outcome: list = outcome) -> None:
                outcome.append(err)

            try:
                self._producer.produce(self._topic, value, key, on_delivery=delivered)
                while not outcome:
                    self._producer.flush(1.0)
                    if stopping():
                        stop_seen_at = stop_seen_at or time.monotonic()
                        if time.monotonic() - stop_seen_at > GIVE_UP_AFTER_STOP_S:
                            raise RecordNotWritten("the broker did not acknowledge an accepted record")
            except (KafkaException, SystemError) as e:  # a fatal error surfaces from flush()
                metrics.RECORD_ERRORS.inc()
                self._replace_producer(e.__cause__ or e)
                time.sleep(0.5)
                continue
            if outcome[0] is None:
                return record
            metrics.RECORD_ERRORS.inc()
            if outcome[0].fatal() or outcome[0].code() == KafkaError._MSG_TIMED_OUT:
                # a timed-out record on an idempotent producer that saw the broker come back empty
                # keeps timing out (measured); a fresh producer delivers at once
                self._replace_producer(outcome[0])
            else:
                log.error("accepted record not written (%s); retrying", outcome[0])
            time.sleep(1.0)

    def close(self) -> None:
        self._producer.flush(10)
