"""Outages against real servers: the sinks wait (blocked, so the flow is back-pressured), for as long
as it takes, and then write everything exactly once; a Kafka sink survives a broker restarted empty
(its idempotent producer fenced or timing out for ever) by building a fresh producer."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from infra.embedded import EmbeddedKafka, EmbeddedPostgres, free_port
from infra.kafka_admin import ensure_topics
from infra.migrate import apply_up
from sinks.kafka import DeadLetters, ModelKafkaSink
from sinks.postgres import PostgresEventSink
from sinks.retry import Backoff
from tests.support import consume_all, wait_until
from worktool.events import MessageClassified, MonitorEvent
from worktool.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
FAST = Backoff(initial_s=0.1, max_s=2.0, report_every_s=5.0)
LIMITS = Settings().limits


def classified(message_id: str, i: int) -> MonitorEvent:
    return MessageClassified.event(
        event_time=T0 + timedelta(seconds=i),
        session_id=f"group:群{i % 5}",
        robot_id="wt_monitor",
        message_id=message_id,
        sender_type="user",
        message_type="chat_daily",
        confidence=0.8,
        reason="keyword",
        decided_by="rules",
        sender_name=f"用户{i % 7}",
        text=f"消息{i}",
        raw_text=f"消息{i}",
        text_type=1,
        content_kind="text",
        room_type=1,
        is_group=True,
        group_name=f"群{i % 5}",
        group_remark="",
        reply_target=f"群{i % 5}",
        at_me=False,
        mentions=[],
        mentioned_robots=[],
        is_echo=False,
        session_message_count=i + 1,
    )


def sample(name: str, sink: str) -> float:
    return REGISTRY.get_sample_value(name, {"sink": sink}) or 0.0


class BatchWriter(threading.Thread):
    """Writes `batches` through a sink partition one after the other, as a bytewax worker would."""

    def __init__(self, partition: Any, batches: list[list[MonitorEvent]], pause_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.partition = partition
        self.batches = batches
        self.pause_s = pause_s
        self.written = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for batch in self.batches:
                self.partition.write_batch(batch)
                self.written += 1
                time.sleep(self.pause_s)
        except BaseException as e:  # reported by the test
            self.error = e


def test_postgres_down_for_12_s_is_waited_out_and_every_event_written_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", port=free_port(), durable=False).start()
    partition = PostgresEventSink(pg.url, backoff=FAST).build("pg", 0, 1)
    batches = [[classified(f"m{b}-{i}", b * 10 + i) for i in range(10)] for b in range(30)]
    retries_before = sample("worktool_sink_retries_total", "postgres")
    try:
        apply_up(pg.url)
        writer = BatchWriter(partition, batches)
        with caplog.at_level(logging.INFO, logger="sinks.retry"):
            writer.start()
            wait_until(lambda: writer.written >= 5, 60, what="the first batches")
            pg.stop()
            stopped_at = time.monotonic()
            wait_until(lambda: sample("worktool_sink_waiting", "postgres") == 1, 30, what="the sink to wait")
            blocked_at = writer.written
            time.sleep(max(0.0, 12 - (time.monotonic() - stopped_at)))
            # Blocked, not skipping ahead and not given up: the flow behind it is back-pressured.
            assert writer.is_alive() and writer.error is None and writer.written == blocked_at
            pg.start()  # same port, same data directory
            writer.join(120)
        assert writer.error is None and writer.written == len(batches)
        with psycopg.connect(pg.url) as conn:
            assert conn.execute(
                "SELECT count(*), count(DISTINCT message_id) FROM session_messages"
            ).fetchone() == (300, 300)
            assert conn.execute("SELECT sum(message_count) FROM sessions").fetchone() == (
                sum(range(300 - 5 + 1, 300 + 1)),  # each group's last event carries its count
            )
    finally:
        partition.close()
        pg.stop()
    assert sample("worktool_sink_waiting", "postgres") == 0
    assert sample("worktool_sink_retries_total", "postgres") > retries_before
    lines = [r.getMessage() for r in caplog.records if r.name == "sinks.retry"]
    assert sum("postgres sink: waiting for the service to come back" in line for line in lines) == 1
    assert any("postgres sink: still waiting after" in line for line in lines)
    assert sum("postgres sink: recovered after" in line for line in lines) == 1


TOPICS = {"monitor": 3, "dlq": 3}


def test_kafka_sink_survives_a_broker_restarted_empty_on_the_same_port(tmp_path: Path) -> None:
    port = free_port()
    kafka = EmbeddedKafka(tmp_path / "kafka1", port=port).start()
    sink = ModelKafkaSink(
        kafka.url, "monitor", LIMITS, dead_letters=DeadLetters(kafka.url, "dlq"), backoff=FAST
    )
    partition = sink.build("monitor", 0, 1)
    replaced_before = sample("worktool_sink_producers_replaced_total", "kafka:monitor")
    try:
        ensure_topics(kafka.url, TOPICS)
        partition.write_batch([classified(f"before-{i}", i) for i in range(20)])  # the producer has an id now
        kafka.stop()
        kafka = EmbeddedKafka(tmp_path / "kafka2", port=port).start()  # empty: no topics, no producer ids
        ensure_topics(kafka.url, TOPICS)  # as the gateway's drainer does

        partition.write_batch([classified(f"after-{i}", i) for i in range(20)])

        delivered = [r["value"]["data"]["message_id"] for r in consume_all(kafka.url, "monitor")]
        assert consume_all(kafka.url, "dlq", idle_s=0.5) == []
    finally:
        partition.close()
        kafka.stop()
    # At least once: every record of the second batch is on the new broker (a duplicate is allowed).
    assert set(delivered) == {f"after-{i}" for i in range(20)}
    assert sample("worktool_sink_producers_replaced_total", "kafka:monitor") > replaced_before
    assert sample("worktool_sink_waiting", "kafka:monitor") == 0


def test_kafka_sink_waits_while_the_broker_is_down(tmp_path: Path) -> None:
    port = free_port()
    kafka = EmbeddedKafka(tmp_path / "kafka1", port=port).start()
    ensure_topics(kafka.url, TOPICS)
    partition = ModelKafkaSink(kafka.url, "monitor", LIMITS, backoff=FAST).build("monitor", 0, 1)
    batches = [[classified(f"b{b}-{i}", i) for i in range(10)] for b in range(30)]
    writer = BatchWriter(partition, batches)
    try:
        writer.start()
        wait_until(lambda: writer.written >= 1, 60, what="the first batch")
        kafka.stop()
        wait_until(lambda: sample("worktool_sink_waiting", "kafka:monitor") == 1, 60, what="the sink to wait")
        assert writer.is_alive() and writer.error is None
        waiting_on = writer.written  # the index of the batch it waits to write
        kafka = EmbeddedKafka(tmp_path / "kafka2", port=port).start()
        ensure_topics(kafka.url, TOPICS)
        writer.join(120)
        assert writer.error is None and writer.written == len(batches)
        delivered = {r["value"]["data"]["message_id"] for r in consume_all(kafka.url, "monitor")}
    finally:
        partition.close()
        kafka.stop()
    # The first batches went to the old broker; from the one it waited on, every record is here.
    expected = {e.data.message_id for batch in batches[waiting_on:] for e in batch}  # type: ignore[attr-defined]
    assert expected <= delivered
    assert sample("worktool_sink_waiting", "kafka:monitor") == 0
