"""The live Kafka source never silently skips records of a replaced topic: a resume state from another
topic (id) or beyond the partition's end restarts the partition from its beginning, and says so."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from bytewax.connectors.kafka import KafkaSource
from bytewax.testing import poll_next_batch

from dataflows.sources import GuardedKafkaSource
from tests.support import chaos_scale, produce, wait_until

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


@pytest.mark.chaos
def test_a_topic_recreated_while_the_partition_runs_is_read_from_its_beginning(tmp_path) -> None:
    """The finding of issue 13: a broker that came back empty (memory-only) has the topic again under a
    new id; the running consumer kept its old position and waited for the new topic to grow past it, so
    the first records of the recreated topic were never read. (Its own broker: deleting a topic on a
    running Tansu crashes librdkafka consumers of it, measured; a restart is what happens in production.)"""
    from infra.embedded import EmbeddedKafka, free_port
    from infra.kafka_admin import ensure_topics

    broker = EmbeddedKafka(tmp_path / "kafka", port=free_port()).start()
    try:
        bootstrap, topic = broker.url, "worktool.raw.restart"
        ensure_topics(bootstrap, {topic: 1})
        old = 20 * chaos_scale()
        produce(bootstrap, topic, [("k", f"old {i}".encode()) for i in range(old)])
        resets: list = []
        inner = KafkaSource([bootstrap], [topic], tail=True, add_config={"auto.offset.reset": "error"})
        src = GuardedKafkaSource(inner, bootstrap, lambda part, why: resets.append((part, why)), 0.2)
        [part_name] = src.list_parts()
        part = src.build_part("in", part_name, None)
        got: list[bytes] = []
        wait_until(lambda: got.extend(values(part.next_batch())) or len(got) >= old, 30, what="old records")
        old_id = part.snapshot()[0]

        broker.stop()  # SIGKILL-like for a memory-only broker: everything is gone
        broker.start()
        ensure_topics(bootstrap, {topic: 1})
        n = old // 2  # fewer than before: the old position is beyond the new topic's end
        produce(bootstrap, topic, [("k", f"new {i}".encode()) for i in range(n)])
        fresh: list[bytes] = []
        wait_until(lambda: fresh.extend(values(part.next_batch())) or len(fresh) >= n, 60, what="new records")
        assert fresh == [f"new {i}".encode() for i in range(n)]
        assert len(resets) == 1 and "recreated" in resets[0][1] and resets[0][0] == part_name
        assert part.snapshot()[0] not in (None, old_id)
        part.close()
    finally:
        broker.stop()


def values(batch: list) -> list[bytes]:
    return [m.value for m in batch if getattr(m, "value", None) is not None]


def test_the_partitions_of_a_worker_share_one_consumer_and_keep_their_own_offsets(
    kafka_bootstrap, unique_topics
) -> None:
    """bytewax's KafkaSource opens a consumer per partition, each fetching on its own (the idle flow's
    CPU, benchmarks/README.md "Idle stack"); here one consumer serves them all, and each partition still
    gets exactly its records and snapshots its own next offset, also when the polling one ends first."""
    name = unique_topics(raw_partitions=3)["topic_raw"]
    sent = {f"k{i}": f"record {i}".encode() for i in range(30)}
    produce(kafka_bootstrap, name, list(sent.items()))
    src = source(kafka_bootstrap, name, [])
    parts = {p: src.build_part("in", p, None) for p in src.list_parts()}
    assert len(parts) == 3
    assert len({id(part._inner._shared) for part in parts.values()}) == 1
    got: dict[str, list] = {p: [] for p in parts}
    live = set(parts)
    deadline = time.monotonic() + 60
    while live and time.monotonic() < deadline:
        for p in sorted(live):
            try:
                got[p] += parts[p].next_batch()
            except StopIteration:
                live.discard(p)
    assert not live, "every partition reaches its end"
    assert sorted(m.value for ms in got.values() for m in ms) == sorted(sent.values())
    for p, messages in got.items():
        index = int(p.split("-", 1)[0])
        assert {m.partition for m in messages} <= {index}
        assert parts[p].snapshot()[1] == len(messages)
