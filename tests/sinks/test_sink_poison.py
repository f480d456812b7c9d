"""Poison records against the real PostgreSQL and broker: a record one sink can never write goes to the
DLQ topic with its stage and reason, and the rest of its batch is written."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from prometheus_client import REGISTRY

from sinks.kafka import DeadLetters, KafkaWriter, ModelKafkaSink, producer_config
from sinks.postgres import PostgresEventSink
from tests.support import consume_all
from worktool.events import CommandCallback, MessageClassified, MonitorEvent
from worktool.models import DlqRecord
from worktool.settings import RecordLimits, Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
# Small limits, so that "too large" is quick to reach: records of at most ~90 KB.
SMALL = Settings(max_body_bytes=4096).limits


def classified(message_id: str | None, i: int = 0, *, robot: str = "wt_monitor", **data: Any) -> MonitorEvent:
    """A message_classified event, built without validation (poison events are what validation missed)."""
    fields = {
        "message_id": message_id,
        "sender_type": "user",
        "message_type": "chat_daily",
        "confidence": 0.8,
        "reason": "keyword",
        "decided_by": "rules",
        "sender_name": "用户甲",
        "text": "佣金什么时候结算？",
        "raw_text": "佣金什么时候结算？",
        "text_type": 1,
        "content_kind": "text",
        "room_type": 1,
        "is_group": True,
        "group_name": "A群",
        "group_remark": "",
        "reply_target": "A群",
        "at_me": False,
        "mentions": [],
        "mentioned_robots": [],
        "is_echo": False,
        "session_message_count": i + 1,
        **data,
    }
    return MessageClassified.model_construct(**fields).at(T0 + timedelta(seconds=i), "group:A群", robot)


def dead_letters_of(bootstrap: str, topic: str) -> list[DlqRecord]:
    return [DlqRecord.model_validate(r["value"]) for r in consume_all(bootstrap, topic)]


def counted(stage: str) -> float:
    return REGISTRY.get_sample_value("worktool_sink_dead_letters_total", {"stage": stage}) or 0.0


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def test_events_the_database_refuses_go_to_the_dlq_and_the_rest_is_written(
    new_database: Callable[..., str], kafka_bootstrap: str, unique_topics: Callable[..., dict[str, Any]]
) -> None:
    db, topics = new_database(migrated=True), unique_topics()
    before = counted("sink:postgres")
    long_robot = secrets.token_hex(4000)  # 8,000 characters that do not compress: no index takes them
    batch = [
        classified("m1", 0),
        classified("long-robot", 1, robot=long_robot),
        classified("nul", 2, text="a\x00b"),
        classified("bad-confidence", 3, confidence=7.0),
        classified(None, 4),  # cannot be projected at all
        classified("m2", 5),
    ]
    sink = PostgresEventSink(db, dead_letters=DeadLetters(kafka_bootstrap, topics["topic_dlq"], SMALL))
    partition = sink.build("pg", 0, 1)
    try:
        partition.write_batch(batch)
    finally:
        partition.close()

    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT message_id FROM session_messages ORDER BY 1").fetchall()
        robots = conn.execute("SELECT robot_id FROM robots").fetchall()
    assert stored == [("m1",), ("m2",)]
    assert robots == [("wt_monitor",)]  # nothing of a refused event was written, not even part of it

    dlq = dead_letters_of(kafka_bootstrap, topics["topic_dlq"])
    by_id = {orjson.loads(d.raw)["data"]["message_id"]: d for d in dlq}
    assert sorted(by_id, key=str) == sorted(["long-robot", "nul", "bad-confidence", None], key=str)
    assert all(d.stage == "sink:postgres" and d.kind == "message_classified" for d in dlq)
    assert "[54000]" in by_id["long-robot"].reason and by_id["long-robot"].robot_id == long_robot
    assert "NUL" in by_id["nul"].reason
    assert "[23514]" in by_id["bad-confidence"].reason
    assert "missing data.message_id" in by_id[None].reason
    assert by_id["nul"].received_at == T0 + timedelta(seconds=2)
    assert counted("sink:postgres") == before + 4


def test_a_batch_without_poison_is_one_transaction_and_no_dead_letter(
    new_database: Callable[..., str], kafka_bootstrap: str, unique_topics: Callable[..., dict[str, Any]]
) -> None:
    db, topics = new_database(migrated=True), unique_topics()
    sink = PostgresEventSink(db, dead_letters=DeadLetters(kafka_bootstrap, topics["topic_dlq"], SMALL))
    partition = sink.build("pg", 0, 1)
    try:
        partition.write_batch([classified(f"m{i}", i) for i in range(50)])
    finally:
        partition.close()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM session_messages").fetchone() == (50,)
    assert consume_all(kafka_bootstrap, topics["topic_dlq"], idle_s=0.5) == []


# ---------------------------------------------------------------------------------------------
# Kafka


def test_records_kafka_cannot_take_go_to_the_dlq_and_the_rest_is_written(
    kafka_bootstrap: str, unique_topics: Callable[..., dict[str, Any]]
) -> None:
    topics = unique_topics()
    before = counted("sink:kafka")
    unserialisable = CommandCallback.model_construct(
        kind="result", worktool_message_id="w1", error_code=10**20, error_reason=""
    ).at(T0, robot_id="wt_day")  # the monitor sink's crash of the hardening issue
    too_large = classified("huge", 1, text="长" * 60_000)  # ~180 KB as JSON, over SMALL's ~90 KB
    sink = ModelKafkaSink(
        kafka_bootstrap,
        topics["topic_monitor"],
        SMALL,
        dead_letters=DeadLetters(kafka_bootstrap, topics["topic_dlq"], SMALL),
    )
    partition = sink.build("monitor", 0, 1)
    try:
        partition.write_batch([classified("m1", 0), unserialisable, too_large, classified("m2", 2)])
    finally:
        partition.close()

    monitor = consume_all(kafka_bootstrap, topics["topic_monitor"])
    assert sorted(r["value"]["data"]["message_id"] for r in monitor) == ["m1", "m2"]
    dlq = {d.kind: d for d in dead_letters_of(kafka_bootstrap, topics["topic_dlq"])}
    assert set(dlq) == {"command_callback", "message_classified"}
    assert all(d.stage == "sink:kafka" for d in dlq.values())
    assert "Integer exceeds 64-bit range" in dlq["command_callback"].reason
    assert '"error_code":100000000000000000000' in dlq["command_callback"].raw  # kept exactly
    assert "exceeds the limit" in dlq["message_classified"].reason
    assert dlq["message_classified"].truncated and dlq["message_classified"].raw.startswith(
        '{"schema_version"'
    )
    assert counted("sink:kafka") == before + 2


def test_record_refused_by_librdkafka_is_poison_not_an_outage(
    kafka_bootstrap: str, unique_topics: Callable[..., dict[str, Any]]
) -> None:
    topic = unique_topics()["topic_monitor"]
    # A producer configured below the record (the situation of the hardening issue's 600 KB message).
    config = producer_config(kafka_bootstrap, SMALL, **{"message.max.bytes": 20_000})
    writer = KafkaWriter(config, topic, record_max_bytes=10**6)
    try:
        poisoned = writer.write([classified("m1", 0), classified("big", 1, text="x" * 50_000)])
    finally:
        writer.close()
    assert [p.item.data.message_id for p in poisoned] == ["big"]
    assert "too large" in poisoned[0].reason.lower()
    assert [r["value"]["data"]["message_id"] for r in consume_all(kafka_bootstrap, topic)] == ["m1"]


def test_a_600_kb_message_passes_every_producer_with_the_default_limits(
    kafka_bootstrap: str, unique_topics: Callable[..., dict[str, Any]]
) -> None:
    topics = unique_topics()
    limits: RecordLimits = Settings().limits
    text = "长" * 200_000  # 600 KB of UTF-8; the event carries it as text, raw_text and a mention
    event = classified("big", 0, text=text, raw_text="@" + text, mentions=[text])
    assert len(event.to_json()) > 1_800_000  # over librdkafka's 1 MB default, which crashed the flow
    sink = ModelKafkaSink(
        kafka_bootstrap,
        topics["topic_monitor"],
        limits,
        dead_letters=DeadLetters(kafka_bootstrap, topics["topic_dlq"], limits),
    )
    partition = sink.build("monitor", 0, 1)
    try:
        partition.write_batch([event])
    finally:
        partition.close()
    (record,) = consume_all(kafka_bootstrap, topics["topic_monitor"])
    assert record["value"]["data"]["text"] == text
    assert consume_all(kafka_bootstrap, topics["topic_dlq"], idle_s=0.5) == []


def test_dead_letter_larger_than_any_record_is_cut_to_fit(
    kafka_bootstrap: str, unique_topics: Callable[..., dict[str, Any]]
) -> None:
    topic = unique_topics()["topic_dlq"]
    letter = DlqRecord(stage="dataflow", reason="invalid record", received_at=T0, raw="\x01" * 100_000)
    partition = ModelKafkaSink(kafka_bootstrap, topic, SMALL).build("dlq", 0, 1)  # the flow's DLQ sink
    try:
        partition.write_batch([letter])
    finally:
        partition.close()
    (record,) = dead_letters_of(kafka_bootstrap, topic)
    assert record.truncated and record.reason == "invalid record"
    assert 0 < len(record.raw) < 100_000 and len(record.to_json()) <= SMALL.record_max_bytes
