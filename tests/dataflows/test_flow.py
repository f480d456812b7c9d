"""The dataflow on in-memory sources: dedup, DLQ, robot records, determinism across batch sizes and
worker counts, recovery."""

from datetime import timedelta

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource

from dataflows.flow import FlowOptions, FlowSinks, build_flow
from operators.classify import RuleClassifier
from tests.dataflows.records import msg, raw, with_ticks
from tests.support import ENTRY_POINTS, SINGLE_WORKER, EntryPoint
from worktool.config import BusinessConfig, RobotConfig

CONFIG = BusinessConfig(robots=[RobotConfig(robot_id="wt_day", name="运营助理小A", role="reply_day")])


def day() -> list[bytes]:
    records = []
    for i in range(40):
        group = f"群{i % 4}"
        t = i * 7.0
        records.append(raw("message", "wt_monitor", t, msg(f"第{i}条消息", f"用户{i % 5}", group)))
        if i % 3 == 0:  # the day robot reports the same message shortly after
            records.append(raw("message", "wt_day", t + 0.3, msg(f"第{i}条消息", f"用户{i % 5}", group)))
    records.append(raw("message", "wt_day", 300, msg("好的收到", "运营助理小A")))
    # @-ing the day robot; the monitor robot's report (atMe false) arrives first and wins the dedup
    mention = msg("在吗", "用户9", rawSpoken="@运营助理小A 在吗")
    records.append(raw("message", "wt_monitor", 299, mention))
    records.append(raw("message", "wt_day", 299.2, {**mention, "atMe": True}))
    records.append(raw("online", "wt_day", 301, {"status": 5}))
    records.append(raw("result", "wt_day", 302, {"messageId": "2020902840222093312", "errorCode": 0}))
    records.append(b"{broken")
    records.append(raw("message", "wt_day", 303, {"spoken": "缺少发送人", "roomType": 1, "groupName": "A群"}))
    return records


def run(items, entry_point: EntryPoint = ENTRY_POINTS["run_main"], batch_size=10, recovery=None):
    events, dlq = [], []
    flow = build_flow(
        TestingSource(items, batch_size=batch_size),
        FlowSinks(events=[TestingSink(events)], dlq=[TestingSink(dlq)]),
        RuleClassifier(CONFIG),
        FlowOptions(shards=8, dedup_window=timedelta(seconds=10), config=CONFIG),
    )
    entry_point(flow, epoch_interval=timedelta(0), recovery_config=recovery)
    return events, dlq


def canonical(events) -> list[str]:
    """Order-insensitive: with several workers, events of different keys interleave freely."""
    return sorted(e.to_json().decode() for e in events)


@pytest.fixture(scope="module")
def reference() -> list[str]:
    """The events of the sample day on run_main, batches of 10."""
    events, _ = run(with_ticks(day()))
    return canonical(events)


def test_duplicates_dropped_echo_marked_and_bad_records_to_dlq(entry_point):
    events, dlq = run(with_ticks(day()), entry_point)
    classified = [e for e in events if e.event == "message_classified"]
    assert len(classified) == 42  # 41 distinct user messages + 1 robot echo; 15 duplicates dropped
    assert len({e.data.message_id for e in classified}) == 42
    mentioned = next(e for e in classified if e.data.text == "在吗")
    assert mentioned.robot_id == "wt_monitor" and mentioned.data.mentioned_robots == ["wt_day"]
    echo = [e for e in classified if e.data.sender_name == "运营助理小A"]
    assert echo[0].data.is_echo is True and echo[0].data.sender_type == "robot"
    joined = {(e.session_id, e.robot_id) for e in events if e.event == "robot_joined_session"}
    assert ("group:群0", "wt_day") in joined and ("group:群0", "wt_monitor") in joined
    assert [e.data.status for e in events if e.event == "robot_status"] == ["online"]
    assert [e.data.worktool_message_id for e in events if e.event == "command_callback"] == [
        "2020902840222093312"
    ]
    assert len(dlq) == 2 and any("receivedName" in d.reason for d in dlq)
    counts = sorted(e.data.session_message_count for e in classified if e.session_id == "group:群1")
    assert counts == list(range(1, 11))


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_same_events_whatever_the_batch_size_and_worker_count(entry_point, batch_size, reference):
    events, _ = run(with_ticks(day()), entry_point, batch_size=batch_size)
    assert canonical(events) == reference


@pytest.mark.parametrize("entry_point", SINGLE_WORKER, indirect=True)  # ABORT: single worker only
def test_resume_after_abort_loses_and_duplicates_nothing(entry_point, tmp_path):
    init_db_dir(tmp_path, 1)
    items = with_ticks(day())
    cut = len(items) // 2
    aborted = [*items[:cut], TestingSource.ABORT(), *items[cut:]]
    recovery = RecoveryConfig(str(tmp_path))
    first, _ = run(aborted, entry_point, recovery=recovery)  # stops abruptly at ABORT
    second, _ = run(aborted, entry_point, recovery=recovery)  # resumes from the last snapshot
    clean, _ = run(items)

    def ids(events):
        return [e.data.message_id for e in events if e.event == "message_classified"]

    assert ids(first) and ids(second)
    # 0 s epochs: everything before the abort was snapshotted with the dedup state, so the resumed
    # run emits exactly the rest: nothing lost, nothing twice, duplicates still recognised.
    assert sorted(ids(first) + ids(second)) == sorted(ids(clean))


def test_counters_count_dlq_duplicates_and_deciding_path(entry_point):
    from prometheus_client import REGISTRY

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        value("worktool_dataflow_dlq_records_total", kind="unreadable"),
        value("worktool_dataflow_duplicate_reports_total"),
        value("worktool_dataflow_messages_classified_total", decided_by="rules"),
    )
    run(with_ticks(day()), entry_point)
    after = (
        value("worktool_dataflow_dlq_records_total", kind="unreadable"),
        value("worktool_dataflow_duplicate_reports_total"),
        value("worktool_dataflow_messages_classified_total", decided_by="rules"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 15, 42]
