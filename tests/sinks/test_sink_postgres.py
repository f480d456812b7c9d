"""The Postgres sink against a real, migrated database: what each event writes, and that re-emitted,
overlapping or reordered batches leave exactly the rows a single clean write leaves."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from sinks.postgres import PostgresEventSink, write_events
from tests.support import EntryPoint
from worktool.events import AiCall, MessageClassified, MonitorEvent

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)

# Table -> ORDER BY of a deterministic dump.
TABLES = {
    "session_messages": "message_id",
    "sessions": "session_id",
    "session_robots": "session_id, robot_id",
    "robots": "robot_id",
    "message_types": "type_code",
    "ai_io_logs": "call_id",
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def classified(
    message_id: str,
    minutes: float,
    *,
    session: str = "group:视频号运营A群",
    robot: str = "wt_monitor",
    count: int = 1,
    text: str = "佣金什么时候结算？",
    message_type: str | None = "chat_daily",
    sender_type: str = "user",
    **data: Any,
) -> MonitorEvent:
    is_group = session.startswith("group:")
    base = {
        "message_id": message_id,
        "sender_type": sender_type,
        "message_type": message_type,
        "confidence": 0.8,
        "reason": "keyword 结算",
        "decided_by": "rules",
        "sentiment": 0.1,
        "need_reply": True,
        "staff_command": None,
        "satisfaction": None,
        "sender_name": "用户甲-138****0000" if is_group else session.rsplit(":", 1)[-1],
        "text": text,
        "raw_text": f"@运营助理小A {text}" if text else "",
        "text_type": 1,
        "content_kind": "text",
        "room_type": 1 if is_group else 2,
        "is_group": is_group,
        "group_name": "视频号运营A群" if is_group else "",
        "group_remark": "A群" if is_group else "",
        "reply_target": "A群" if is_group else session.rsplit(":", 1)[-1],
        "at_me": True,
        "mentions": ["运营助理小A"] if text else [],
        "is_echo": sender_type == "robot",
        "mentioned_robots": [],
        "session_message_count": count,
    }
    base.update(data)
    # Unchecked, as the dataflow builds it: lets a test hand the database a value it must refuse.
    return MessageClassified.model_construct(**base).at(at(minutes), session, robot)


def joined(robot: str, minutes: float, session: str = "group:视频号运营A群") -> MonitorEvent:
    return MonitorEvent(
        event="robot_joined_session",
        event_time=at(minutes),
        session_id=session,
        robot_id=robot,
        data={"group_name": "视频号运营A群", "reply_target": "A群"},
    )


def robot_status(robot: str, status: str, minutes: float) -> MonitorEvent:
    return MonitorEvent(event="robot_status", event_time=at(minutes), robot_id=robot, data={"status": status})


def ai_call(call_id: str, minutes: float, output: str = '{"message_type": "chat_daily"}') -> MonitorEvent:
    return MonitorEvent(
        event="ai_call",
        event_time=at(minutes),
        session_id="group:视频号运营A群",
        robot_id="wt_monitor",
        data={
            "call_id": call_id,
            "message_id": call_id.split(":")[0],
            "operation_type": "classify",
            "provider": "openai",
            "model_id": "qwen-plus",
            "input": '[{"role": "user", "content": "佣金什么时候结算？"}]',
            "output": output,
            "status": "ok",
            "error_message": None,
            "latency_ms": 812,
            "input_tokens": 120,
            "output_tokens": 30,
            "total_tokens": 150,
        },
    )


def command_callback(minutes: float) -> MonitorEvent:
    return MonitorEvent(
        event="command_callback",
        event_time=at(minutes),
        robot_id="wt_reply_day",
        data={
            "kind": "result",
            "worktool_message_id": "2020902840222093312",
            "error_code": 0,
            "error_reason": "",
        },
    )


def day_of_events() -> list[MonitorEvent]:
    """A small but varied stream, in emission order, with every projected event kind."""
    return [
        joined("wt_monitor", 0),
        classified("m1", 0, count=1),
        ai_call("m1:classify", 0),
        joined("wt_reply_day", 0.5),
        robot_status("wt_reply_day", "online", 0.6),
        classified("m2", 1, count=2, text="", message_type="chat_other", text_type=2, content_kind="image"),
        classified(
            "m3", 2, count=3, group_remark="A群-新", reply_target="A群-新", message_type="chat_complaint"
        ),
        joined("wt_monitor", 3, session="private:wt_monitor:用户乙"),
        classified("p1", 3, session="private:wt_monitor:用户乙", count=1, text="你好，我想退出合作"),
        robot_status("wt_reply_day", "offline", 4),
        command_callback(4.5),
        classified("m4", 5, count=4, sender_type="staff", message_type="staff_reply_user", text="马上处理"),
        ai_call("m4:classify", 5),
        robot_status("wt_reply_day", "online", 6),
    ]


@pytest.fixture
def db(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db, autocommit=True, row_factory=dict_row) as c:
        yield c


def dump(conn: psycopg.Connection, without: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table, order in TABLES.items():
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        out[table] = [{k: v for k, v in r.items() if k not in without} for r in rows]
    return out


def rows(conn: psycopg.Connection, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    return conn.execute(sql, params).fetchall()


def rejected(event: str) -> float:
    return REGISTRY.get_sample_value("worktool_pg_sink_rejected_events_total", {"event": event}) or 0.0


# ---------------------------------------------------------------------------------------------
# What each event writes


def test_message_classified_writes_message_session_and_robot(conn: psycopg.Connection) -> None:
    counts = write_events(conn, [classified("m1", 0, count=1)])
    assert counts == {"message_types": 1, "session_messages": 1, "sessions": 1, "robot_seen": 1}

    [m] = rows(conn, "SELECT * FROM session_messages")
    assert m["message_id"] == "m1"
    assert m["session_id"] == "group:视频号运营A群"
    assert m["robot_id"] == "wt_monitor"
    assert m["received_at"] == at(0)
    assert (m["sender_name"], m["sender_type"]) == ("用户甲-138****0000", "user")
    assert (m["content"], m["raw_content"]) == ("佣金什么时候结算？", "@运营助理小A 佣金什么时候结算？")
    assert (m["message_type"], m["confidence"], m["decided_by"]) == (
        "chat_daily",
        pytest.approx(0.8),
        "rules",
    )
    assert m["mentions"] == ["运营助理小A"]
    assert m["at_me"] is True and m["is_echo"] is False and m["is_staff_intervention"] is False
    assert (m["group_name"], m["group_remark"], m["room_type"]) == ("视频号运营A群", "A群", 1)

    [s] = rows(conn, "SELECT * FROM sessions")
    assert s["session_id"] == "group:视频号运营A群"
    assert s["is_group"] is True and s["user_name"] is None
    assert (s["group_name"], s["reply_target"]) == ("视频号运营A群", "A群")
    assert (s["message_count"], s["first_message_at"], s["last_message_at"]) == (1, at(0), at(0))
    assert (s["status"], s["ai_paused"]) == ("auto", False)

    [r] = rows(conn, "SELECT * FROM robots")
    assert (r["robot_id"], r["last_seen_at"], r["status"]) == ("wt_monitor", at(0), "unknown")

    # The seeded type was referenced, not replaced.
    assert rows(conn, "SELECT name_zh FROM message_types WHERE type_code = 'chat_daily'") == [
        {"name_zh": "日常聊天"}
    ]
    assert rows(conn, "SELECT count(*) AS n FROM message_types") == [{"n": 14}]


def test_private_message_session_names_the_user(conn: psycopg.Connection) -> None:
    write_events(conn, [classified("p1", 0, session="private:wt_monitor:用户乙", text="你好")])

    [s] = rows(conn, "SELECT * FROM sessions")
    assert s["is_group"] is False
    assert (s["user_name"], s["reply_target"], s["group_name"]) == ("用户乙", "用户乙", None)


def test_image_with_empty_text_is_stored(conn: psycopg.Connection) -> None:
    image = classified(
        "img", 0, text="", raw_text="", text_type=2, content_kind="image", message_type="chat_other"
    )
    write_events(conn, [image])

    [m] = rows(conn, "SELECT content, raw_content, text_type, content_kind, mentions FROM session_messages")
    assert m == {"content": "", "raw_content": "", "text_type": 2, "content_kind": "image", "mentions": []}


def test_robot_message_has_no_type(conn: psycopg.Connection) -> None:
    write_events(conn, [classified("echo", 0, sender_type="robot", message_type=None, robot="wt_reply_day")])

    [m] = rows(conn, "SELECT message_type, is_echo, sender_type FROM session_messages")
    assert m == {"message_type": None, "is_echo": True, "sender_type": "robot"}


def test_unknown_message_type_is_registered_not_refused(conn: psycopg.Connection) -> None:
    write_events(conn, [classified("m1", 0, message_type="chat_brand_new", sender_type="assistant")])

    [t] = rows(conn, "SELECT * FROM message_types WHERE type_code = 'chat_brand_new'")
    assert (t["sender_category"], t["name_zh"], t["priority"]) == ("staff", "chat_brand_new", 10)
    assert rows(conn, "SELECT message_type FROM session_messages") == [{"message_type": "chat_brand_new"}]


def test_robot_joined_session(conn: psycopg.Connection) -> None:
    write_events(conn, [joined("wt_monitor", 2), joined("wt_reply_day", 3)])
    write_events(conn, [joined("wt_monitor", 2)])  # re-emitted

    assert rows(conn, "SELECT session_id, robot_id, first_seen_at FROM session_robots ORDER BY robot_id") == [
        {"session_id": "group:视频号运营A群", "robot_id": "wt_monitor", "first_seen_at": at(2)},
        {"session_id": "group:视频号运营A群", "robot_id": "wt_reply_day", "first_seen_at": at(3)},
    ]
    assert rows(conn, "SELECT robot_id, last_seen_at FROM robots ORDER BY robot_id") == [
        {"robot_id": "wt_monitor", "last_seen_at": at(2)},
        {"robot_id": "wt_reply_day", "last_seen_at": at(3)},
    ]
    # A robot seen in a later message: last_seen_at moves forward, never back.
    write_events(conn, [classified("m9", 9, robot="wt_monitor")])
    write_events(conn, [joined("wt_monitor", 1, session="group:B群")])
    assert rows(conn, "SELECT last_seen_at FROM robots WHERE robot_id = 'wt_monitor'") == [
        {"last_seen_at": at(9)}
    ]


def test_robot_status_older_than_stored_does_not_overwrite(conn: psycopg.Connection) -> None:
    write_events(conn, [robot_status("wt1", "online", 10)])
    write_events(conn, [robot_status("wt1", "offline", 5)])  # a late, older callback
    assert rows(conn, "SELECT status, last_status_at FROM robots") == [
        {"status": "online", "last_status_at": at(10)}
    ]

    write_events(conn, [robot_status("wt1", "offline", 11)])
    assert rows(conn, "SELECT status, last_status_at FROM robots") == [
        {"status": "offline", "last_status_at": at(11)}
    ]

    # Inside one batch too, in either order: the newest wins.
    write_events(conn, [robot_status("wt2", "online", 2), robot_status("wt2", "offline", 1)])
    write_events(conn, [robot_status("wt3", "offline", 1), robot_status("wt3", "online", 2)])
    assert rows(conn, "SELECT robot_id, status FROM robots WHERE robot_id IN ('wt2', 'wt3') ORDER BY 1") == [
        {"robot_id": "wt2", "status": "online"},
        {"robot_id": "wt3", "status": "online"},
    ]


def test_status_and_sightings_of_one_robot_do_not_clobber_each_other(conn: psycopg.Connection) -> None:
    write_events(conn, [robot_status("wt_monitor", "online", 1), classified("m1", 2)])
    write_events(conn, [joined("wt_monitor", 3)])

    [r] = rows(conn, "SELECT status, last_status_at, last_seen_at FROM robots")
    assert r == {"status": "online", "last_status_at": at(1), "last_seen_at": at(3)}


def test_ai_call_is_logged_once(conn: psycopg.Connection) -> None:
    write_events(conn, [ai_call("m1:classify", 0)])
    write_events(conn, [ai_call("m1:classify", 0, output="a different retry")])  # same call, re-emitted

    [log] = rows(conn, "SELECT * FROM ai_io_logs")
    assert log["call_id"] == "m1:classify"
    assert log["ai_output"] == '{"message_type": "chat_daily"}'
    assert (log["message_id"], log["operation_type"], log["provider"], log["model_id"]) == (
        "m1",
        "classify",
        "openai",
        "qwen-plus",
    )
    assert (log["request_duration_ms"], log["input_tokens"], log["output_tokens"], log["total_tokens"]) == (
        812,
        120,
        30,
        150,
    )
    assert log["called_at"] == at(0)


def test_unprojected_events_and_other_items_are_ignored(conn: psycopg.Connection) -> None:
    other = MonitorEvent(
        event="staff_window_closed", event_time=at(0), session_id="group:A群", data={"opened_at": at(0)}
    )
    assert write_events(conn, [command_callback(0), other, "not an event", None]) == {}
    assert all(not table_rows or table == "message_types" for table, table_rows in dump(conn).items())


def test_malformed_event_is_skipped_and_counted(conn: psycopg.Connection) -> None:
    before = rejected("ai_call")
    # Events are validated when built from data; these are built unchecked, as the hot path does.
    no_call_id = AiCall.model_construct(**{**ai_call("x", 0).data.model_dump(), "call_id": ""}).at(at(0))

    counts = write_events(conn, [no_call_id, classified("m1", 0)])

    assert counts["session_messages"] == 1 and "ai_io_logs" not in counts
    assert rejected("ai_call") == before + 1


def test_reemitted_message_keeps_columns_owned_by_later_writers(conn: psycopg.Connection) -> None:
    write_events(conn, [classified("m1", 0)])
    conn.execute(
        "UPDATE session_messages SET is_staff_intervention = true, intervention_reason = 'complaint' "
        "WHERE message_id = 'm1'"
    )
    write_events(conn, [classified("m1", 0, message_type="chat_complaint", confidence=0.95)])

    [m] = rows(conn, "SELECT message_type, is_staff_intervention, intervention_reason FROM session_messages")
    assert m == {
        "message_type": "chat_complaint",
        "is_staff_intervention": True,
        "intervention_reason": "complaint",
    }


# ---------------------------------------------------------------------------------------------
# Idempotency: at-least-once delivery must not show in the tables


def test_same_batch_twice_leaves_identical_rows(conn: psycopg.Connection) -> None:
    events = day_of_events()
    write_events(conn, events)
    first = dump(conn)

    time.sleep(0.01)  # a rewritten row would get a later updated_at
    write_events(conn, events)

    assert dump(conn) == first  # including created_at / updated_at: nothing was rewritten
    assert {t: len(r) for t, r in first.items()} == {
        "session_messages": 5,
        "sessions": 2,
        "session_robots": 3,
        "robots": 2,
        "message_types": 14,
        "ai_io_logs": 2,
    }


def test_overlapping_and_reordered_batches_equal_one_clean_write(
    new_database: Callable[..., str], conn: psycopg.Connection
) -> None:
    events = day_of_events()
    write_events(conn, events)
    clean = dump(conn, without=("created_at", "updated_at", "id"))

    with psycopg.connect(new_database(migrated=True), autocommit=True, row_factory=dict_row) as other:
        # A crash and resume re-emits a suffix; a second one re-emits an older stretch again, and a
        # batch may repeat an event within itself.
        for batch in (events[:6], events[3:10], events[2:], events[0:4][::-1], events[5:8] * 2, events[::-1]):
            write_events(other, batch)
        assert dump(other, without=("created_at", "updated_at", "id")) == clean


def test_session_aggregates_within_one_batch(conn: psycopg.Connection) -> None:
    # Newest last, then newest first: the row must be the same either way.
    events = [
        classified("m1", 0, count=1),
        classified("m2", 1, count=2),
        classified("m3", 2, count=3, group_remark="A群-新", reply_target="A群-新"),
    ]
    write_events(conn, events)
    forward = rows(conn, "SELECT * FROM sessions")
    conn.execute("TRUNCATE sessions")
    write_events(conn, events[::-1])
    backward = rows(conn, "SELECT * FROM sessions")

    for s in (forward, backward):
        [row] = s
        assert (row["message_count"], row["first_message_at"], row["last_message_at"]) == (3, at(0), at(2))
        assert (row["group_remark"], row["reply_target"]) == ("A群-新", "A群-新")


def test_older_message_rewritten_later_does_not_roll_the_session_back(conn: psycopg.Connection) -> None:
    write_events(conn, [classified("m1", 0, count=1), classified("m2", 5, count=2, reply_target="A群-新")])
    write_events(conn, [classified("m1", 0, count=1)])

    [s] = rows(conn, "SELECT message_count, first_message_at, last_message_at, reply_target FROM sessions")
    assert s == {
        "message_count": 2,
        "first_message_at": at(0),
        "last_message_at": at(5),
        "reply_target": "A群-新",
    }


# ---------------------------------------------------------------------------------------------
# The bytewax sink: batches, failures, reconnection


def test_refused_event_is_skipped_the_rest_written(db: str, conn: psycopg.Connection) -> None:
    before = rejected("message_classified")
    partition = PostgresEventSink(db).build("pg", 0, 1)
    try:
        # confidence 7 violates the CHECK: a poison event must not wedge the dataflow.
        partition.write_batch(
            [classified("m1", 0), classified("bad", 1, confidence=7.0), classified("m2", 2)]
        )
    finally:
        partition.close()

    assert [r["message_id"] for r in rows(conn, "SELECT message_id FROM session_messages ORDER BY 1")] == [
        "m1",
        "m2",
    ]
    assert rejected("message_classified") == before + 1


def test_sink_reconnects_after_losing_its_connection(db: str, conn: psycopg.Connection) -> None:
    partition = PostgresEventSink(db).build("pg", 0, 1)
    try:
        partition.write_batch([classified("m1", 0)])
        pid = partition._conn.info.backend_pid
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

        partition.write_batch([classified("m2", 1, count=2)])  # first attempt fails, the retry reconnects

        assert partition._conn.info.backend_pid != pid
    finally:
        partition.close()
    assert rows(conn, "SELECT message_count FROM sessions") == [{"message_count": 2}]


def test_bytewax_dataflow_writes_through_the_sink(
    new_database: Callable[..., str], db: str, conn: psycopg.Connection, entry_point: EntryPoint
) -> None:
    events = day_of_events()
    flow = Dataflow("pg_sink_test")
    stream = op.input("in", flow, TestingSource(events, batch_size=4))
    # Spread the items over the workers: each writes its share through its own connection.
    op.output("pg", op.redistribute("spread", stream), PostgresEventSink(db))
    entry_point(flow)

    with psycopg.connect(new_database(migrated=True), autocommit=True, row_factory=dict_row) as direct:
        write_events(direct, events)
        expected = dump(direct, without=("created_at", "updated_at", "id"))
    assert dump(conn, without=("created_at", "updated_at", "id")) == expected


def test_copy_and_row_by_row_paths_write_the_same_rows(
    new_database: Callable[..., str], conn: psycopg.Connection
) -> None:
    events = day_of_events()
    write_events(conn, events)  # COPY into the staging tables, one upsert per table
    with psycopg.connect(new_database(migrated=True), autocommit=True, row_factory=dict_row) as other:
        for batch in (events[:4], events[4:]):
            write_events(other, batch, copy=False)  # the event-by-event path of a refused batch
        assert dump(other, without=("created_at", "updated_at", "id")) == dump(
            conn, without=("created_at", "updated_at", "id")
        )


def test_staging_tables_are_left_empty_after_a_refused_batch_and_inside_a_transaction(
    new_database: Callable[..., str], conn: psycopg.Connection
) -> None:
    events = day_of_events()
    bad = classified("bad", 1, confidence=7.0)  # refused by a check constraint, after the COPY
    with pytest.raises(psycopg.errors.CheckViolation):
        write_events(conn, [*events[:3], bad])
    assert dump(conn)["session_messages"] == []
    with conn.transaction():  # the caller's transaction: the batches are savepoints, nothing leaks
        write_events(conn, events[:3])
        write_events(conn, events[3:])
    staged = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r'"
    ).fetchall()
    assert staged, "the batches went through staging tables"
    for row in staged:
        assert conn.execute(f"SELECT count(*) AS n FROM {row['relname']}").fetchone()["n"] == 0
    with psycopg.connect(new_database(migrated=True), autocommit=True, row_factory=dict_row) as clean:
        write_events(clean, events)
        assert dump(clean, without=("created_at", "updated_at", "id")) == dump(
            conn, without=("created_at", "updated_at", "id")
        )
