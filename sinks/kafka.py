"""Kafka sink for boundary models (MonitorEvent, DlqRecord): `to_json()` values, keyed so that one
session's events stay in order on one partition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException, Producer


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        **extra,
    }


def event_key(item: Any) -> bytes | None:
    key = getattr(item, "session_id", None) or getattr(item, "robot_id", None)
    return key.encode() if key else None


class _KafkaPartition(StatelessSinkPartition[Any]):
    def __init__(self, config: dict[str, Any], topic: str, key_fn: Callable[[Any], bytes | None]) -> None:
        self._producer = Producer(config)
        self._topic = topic
        self._key_fn = key_fn
        self._errors: list[str] = []

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def write_batch(self, items: list[Any]) -> None:
        for item in items:
            while True:
                try:
                    self._producer.produce(
                        self._topic, item.to_json(), self._key_fn(item), on_delivery=self._on_delivery
                    )
                    break
                except BufferError:  # local queue full: let librdkafka drain it
                    self._producer.poll(0.1)
        # At-least-once: the batch counts as written only once the broker acked all of it; a failure
        # crashes the worker, which resumes from its last snapshot and writes the batch again.
        remaining = self._producer.flush(30)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise KafkaException(f"{self._topic}: {remaining} unacked, errors: {errors[:3]}")

    def close(self) -> None:
        self._producer.flush(10)


class ModelKafkaSink(DynamicSink[Any]):
    def __init__(self, bootstrap: str, topic: str, key_fn: Callable[[Any], bytes | None] = event_key) -> None:
        self.config = producer_config(bootstrap)
        self.topic = topic
        self.key_fn = key_fn

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _KafkaPartition:
        return _KafkaPartition(self.config, self.topic, self.key_fn)
