"""The live Kafka source never silently skips records of a replaced topic: a resume state from another
topic (id) or beyond the partition's end restarts the partition from its beginning, and says so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bytewax.connectors.kafka import KafkaSource
from bytewax.testing import poll_next_batch

from dataflows.sources import GuardedKafkaSource
from tests.support import produce

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(kafka_bootstrap, unique_topics) -> str:
    name = unique_topics(raw_partitions=1)["topic_raw"]
    produce(kafka_bootstrap, name, [("k", f"record {i}".encode()) for i in range(5)])
    return name


def source(bootstrap: str, topic: str, resets: list) -> GuardedKafkaSource:
    inner = KafkaSource([bootstrap], [topic], tail=False, add_config={"session.timeout.ms": "6000"})
    return GuardedKafkaSource(inner, bootstrap, lambda part, why: resets.append((part, why)))


def read_all(part) -> list[bytes]:
    values = []
    while True:
        try:
            batch = poll_next_batch(part, timeout=timedelta(seconds=10))
        except StopIteration:
            return values
        values += [m.value for m in batch if getattr(m, "value", None) is not None]


def test_a_fresh_start_reads_everything_and_snapshots_the_topic_id(kafka_bootstrap, topic) -> None:
    resets: list = []
    src = source(kafka_bootstrap, topic, resets)
    [part_name] = src.list_parts()
    part = src.build_part("in", part_name, None)
    assert len(read_all(part)) == 5
    topic_id, offset = part.snapshot()
    assert topic_id and offset == 5 and resets == []
    # Resuming from that snapshot continues after it (nothing new to read).
    again = src.build_part("in", part_name, (topic_id, offset))
    assert read_all(again) == [] and resets == []


def test_a_snapshot_of_a_replaced_topic_restarts_from_the_beginning(kafka_bootstrap, topic) -> None:
    resets: list = []
    src = source(kafka_bootstrap, topic, resets)
    [part_name] = src.list_parts()
    part = src.build_part("in", part_name, ("an-older-topic-id", 3))
    assert len(read_all(part)) == 5
    assert resets and "recreated" in resets[0][1]


def test_a_resume_offset_beyond_the_end_restarts_from_the_beginning(kafka_bootstrap, topic) -> None:
    resets: list = []
    src = source(kafka_bootstrap, topic, resets)
    [part_name] = src.list_parts()
    topic_id = src.build_part("in", part_name, None).snapshot()[0]
    part = src.build_part("in", part_name, (topic_id, 1_000_000))
    assert len(read_all(part)) == 5
    assert resets and "beyond the end" in resets[0][1]
