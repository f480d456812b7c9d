from datetime import UTC, datetime, timedelta

from operators.dedup import Deduplicator

W = timedelta(seconds=10)
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_second_robot_within_window_is_duplicate_of_first():
    d = Deduplicator()
    first = d.observe("fp", "m1", "monitor", at(0), W)
    second = d.observe("fp", "m2", "day", at(0.4), W)
    assert not first.is_duplicate
    assert second.is_duplicate and second.message_id == "m1" and second.robot_is_new


def test_same_robot_repeating_is_a_new_message():
    d = Deduplicator()
    d.observe("fp", "m1", "day", at(0), W)
    again = d.observe("fp", "m2", "day", at(3), W)
    assert not again.is_duplicate and again.message_id == "m2"


def test_exact_same_record_twice_is_duplicate():
    # The gateway's spool may produce a record again after a crash mid-drain.
    d = Deduplicator()
    d.observe("fp", "m1", "day", at(0), W)
    again = d.observe("fp", "m1", "day", at(0), W)
    assert again.is_duplicate and not again.robot_is_new


def test_outside_window_is_new_and_prune_bounds_memory():
    d = Deduplicator()
    d.observe("fp", "m1", "monitor", at(0), W)
    late = d.observe("fp", "m2", "day", at(11), W)
    assert not late.is_duplicate
    for i in range(100):
        d.observe(f"fp{i}", f"x{i}", "day", at(20 + i), W)
    d.prune(at(125), W)
    assert len(d) <= 11


def test_a_control_record_passes_the_dedup_step_unchanged():
    # The console's cancel/escalate requests reach the sessions step through dedup (same shard key).
    from operators.dedup import DedupStep
    from worktool.models import ControlRecord

    record = ControlRecord(
        action="cancel_alert", at=at(0), actor="运营-小王", request_id="r1", alert_id="a1", session_id="s"
    )
    assert DedupStep(W).on_item(record) == [record]
