"""ModelKafkaSink against the real (embedded) broker: each item's to_json() as the value, keyed by
session (else robot) so one session stays in order on one partition, and a batch the broker does not
acknowledge is waited for, however long, and then written. (Poison records: test_sink_poison.py; a broker
restarted empty: test_sink_outages.py.)"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource
from confluent_kafka import KafkaError
from prometheus_client import REGISTRY

from infra.embedded import EmbeddedKafka, free_port
from infra.kafka_admin import ensure_topics
from sinks.kafka import PENDING, ModelKafkaSink, _assign_failures
from sinks.retry import Backoff
from tests.support import EntryPoint, consume_all, wait_until
from worktool.events import MonitorEvent
from worktool.models import DlqRecord

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)


def joined(session: str, robot: str, seconds: float) -> MonitorEvent:
    return MonitorEvent(
        event="robot_joined_session",
        event_time=T0 + timedelta(seconds=seconds),
        session_id=session,
        robot_id=robot,
        data={"group_name": session.removeprefix("group:"), "reply_target": session.removeprefix("group:")},
    )


def robot_status(robot: str, status: str, seconds: float) -> MonitorEvent:
    return MonitorEvent(
        event="robot_status",
        event_time=T0 + timedelta(seconds=seconds),
        robot_id=robot,
        data={"status": status},
    )


def dlq(reason: str, robot: str | None = None) -> DlqRecord:
    return DlqRecord(stage="dataflow", reason=reason, received_at=T0, robot_id=robot, raw="{broken")


def keyed_items() -> list[tuple[Any, bytes | None]]:
    """Items for the sink, each with the key it must get."""
    return [
        *((joined(f"group:群{i % 4}", f"wt_{i % 3}", i), f"group:群{i % 4}".encode()) for i in range(24)),
        (robot_status("wt_day", "online", 30), b"wt_day"),  # no session: keyed by the robot
        (robot_status("wt_day", "offline", 31), b"wt_day"),
        (dlq("unreadable", robot="wt_day"), b"wt_day"),
        (dlq("not JSON"), None),  # neither session nor robot: no key
    ]


def items() -> list[Any]:
    return [item for item, _ in keyed_items()]


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def dead_broker_sink(port: int, topic: str) -> ModelKafkaSink:
    """A sink whose broker does not answer yet: nothing listens on the port, and each attempt gives up
    after 1 s instead of the sink's 10."""
    sink = ModelKafkaSink(f"127.0.0.1:{port}", topic, backoff=Backoff(initial_s=0.1, max_s=1.0))
    sink.config["message.timeout.ms"] = 1000
    sink.config["log_level"] = 0  # the refused connections are the point: keep librdkafka quiet
    return sink


@pytest.fixture
def topic(unique_topics: Callable[..., dict[str, Any]]) -> str:
    return unique_topics(partitions=3)["topic_monitor"]


def test_values_are_to_json_keyed_by_session_else_robot(
    kafka_bootstrap: str, topic: str, entry_point: EntryPoint
) -> None:
    written = items()
    flow = Dataflow("kafka_sink")
    op.output(
        "out",
        op.input("in", flow, TestingSource(written, batch_size=5)),
        ModelKafkaSink(kafka_bootstrap, topic),
    )
    entry_point(flow)

    records = consume_all(kafka_bootstrap, topic)
    expected = sorted((canonical(orjson.loads(item.to_json())), key) for item, key in keyed_items())
    assert sorted((canonical(r["value"]), r["key"]) for r in records) == expected

    # One session's events all on one partition, in the order they were written.
    for session in {item.session_id for item in written if getattr(item, "session_id", None)}:
        of_session = [r for r in records if r["key"] == session.encode()]
        assert len({r["partition"] for r in of_session}) == 1
        sent = [item.event_time for item in written if getattr(item, "session_id", None) == session]
        assert [datetime.fromisoformat(r["value"]["event_time"]) for r in of_session] == sent


def test_a_batch_the_broker_does_not_acknowledge_is_waited_for_then_written(tmp_path: Path) -> None:
    port, topic = free_port(), "monitor"
    partition = dead_broker_sink(port, topic).build("out", 0, 1)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            partition.write_batch(items()[:3])
        except BaseException as e:  # reported below
            errors.append(e)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    kafka = None
    try:
        waiting = {"sink": f"kafka:{topic}"}
        wait_until(lambda: REGISTRY.get_sample_value("worktool_sink_waiting", waiting), 30, what="waiting")
        assert writer.is_alive() and not errors  # blocked in write_batch: no give-up, no exception
        kafka = EmbeddedKafka(tmp_path / "kafka", port=port).start()
        ensure_topics(kafka.url, {topic: 3})
        writer.join(60)
        assert not writer.is_alive() and not errors
        got = sorted(canonical(r["value"]) for r in consume_all(kafka.url, topic))
    finally:
        partition.close()
        if kafka is not None:
            kafka.stop()
    assert got == sorted(canonical(orjson.loads(item.to_json())) for item in items()[:3])


def test_failure_reports_go_to_their_records_and_an_unknown_one_means_no_outcome_is_known() -> None:
    # Only failures are reported (delivery.report.only.error), by the record's bytes: equal records are
    # interchangeable, a record refused at produce() keeps its error, and a report naming no record
    # still without an outcome makes the writer send every unrefused record again.
    pending: list[tuple[Any, bytes | None, bytes]] = [("a", None, b"x"), ("b", None, b"y"), ("c", None, b"x")]
    refused = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    reports: list[Any] = [None, refused, None]
    assert _assign_failures(pending, reports, [(timed_out, b"x")])
    assert sum(r is timed_out for r in reports) == 1 and reports[1] is refused
    assert sum(r is None for r in reports) == 1
    reports = [None, refused, None]
    assert not _assign_failures(pending, reports, [(timed_out, b"y")])  # b"y" already has its outcome
    assert _assign_failures(pending, [None, None, None], [])
    assert PENDING is not None
