"""Loss detection (operators/gaps.py, docs/rules.md §9): a gateway's sequence numbers that have not
arrived a grace period after a later one did are reported once; late arrivals correct and close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from operators.alerts import AlertRules
from operators.gaps import GapDetector, GapStep, SeqMark
from operators.timers import Tick
from worktool.config import BusinessConfig

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def marks(gw: str, numbers: list[int], start: float = 0.0) -> list[SeqMark]:
    return [SeqMark(gw, n, at(start + i)) for i, n in enumerate(numbers)]


def feed(detector: GapDetector, items: list[SeqMark]) -> list:
    changed = []
    for m in items:
        changed += detector.seen(m)
    return changed


def test_in_order_numbers_leave_no_hole() -> None:
    d = GapDetector(GRACE)
    assert feed(d, marks("gw1", list(range(1, 101)))) == []
    assert d.due(at(10_000)) == [] and d.gateways["gw1"].high == 100


def test_out_of_order_within_the_grace_is_no_gap() -> None:
    d = GapDetector(GRACE)
    feed(d, marks("gw1", [1, 2, 5, 3, 6, 4, 7]))
    assert d.due(at(3600)) == []


def test_a_real_gap_is_reported_once_after_the_grace() -> None:
    d = GapDetector(GRACE)
    feed(d, marks("gw1", [1, 2, 3, 8, 9]))  # 8 arrives at t=3: noticed then
    assert d.due(at(3 + 59)) == []  # within the grace: the spool may still deliver
    [hole] = d.due(at(3 + 60))
    assert (hole.lo, hole.hi, hole.missing, hole.noticed) == (4, 7, 4, at(3))
    assert d.due(at(3 + 120)) == []  # reported once


def test_a_late_arrival_corrects_then_closes_a_reported_gap() -> None:
    d = GapDetector(GRACE)
    feed(d, marks("gw1", [1, 4]))
    [hole] = d.due(at(100))
    assert [s for s, _ in d.seen(SeqMark("gw1", 2, at(200)))] == ["corrected"] and hole.missing == 1
    assert [s for s, _ in d.seen(SeqMark("gw1", 2, at(201)))] == []  # a duplicate changes nothing
    assert [s for s, _ in d.seen(SeqMark("gw1", 3, at(202)))] == ["closed"] and hole.missing == 0
    assert d.open_holes("gw1") == []


def test_a_late_arrival_before_the_grace_closes_silently() -> None:
    d = GapDetector(GRACE)
    feed(d, marks("gw1", [1, 3]))
    assert d.seen(SeqMark("gw1", 2, at(30))) == []
    assert d.due(at(1000)) == []


def test_a_gateway_restart_is_a_new_count_and_the_old_one_keeps_its_holes() -> None:
    d = GapDetector(GRACE)
    feed(d, marks("old", [1, 2, 5]))
    feed(d, marks("new", [1, 2, 3], start=10))  # a new boot id starts again at 1: no gap, no confusion
    [hole] = d.due(at(200))
    assert (hole.gw, hole.lo, hole.hi) == ("old", 3, 4)


def test_voided_numbers_are_not_waited_for() -> None:
    d = GapDetector(GRACE)
    feed(d, [SeqMark("gw1", 1, at(0)), SeqMark("gw1", 4, at(1), void=(2, 3))])
    assert d.due(at(1000)) == []


def test_the_first_number_seen_starts_the_count() -> None:
    d = GapDetector(GRACE)
    feed(d, marks("gw1", [500, 501]))  # a dataflow started from scratch: 1..499 were before its time
    assert d.due(at(1000)) == []


def test_idle_gateways_are_forgotten() -> None:
    d = GapDetector(GRACE, retention=timedelta(hours=1))
    feed(d, marks("gw1", [1, 2]))
    d.due(at(7200))
    assert d.gateways == {}


@pytest.fixture
def step() -> GapStep:
    config = BusinessConfig()
    return GapStep(GRACE, AlertRules(config.alerts, "wt_notify"))


def events(out: list, name: str) -> list:
    return [o for o in out if getattr(o, "event", None) == name]


def test_the_step_raises_the_alert_and_cancels_it_when_the_records_arrive(step: GapStep) -> None:
    out = []
    for m in marks("gw1", [1, 2, 6, 7]):
        out += step.on_item(m)
    out += step.on_item(Tick(at(30)))
    assert events(out, "pipeline_gap") == []
    out += step.on_item(Tick(at(2 + 60)))
    [gap] = events(out, "pipeline_gap")
    assert (gap.data.first_seq, gap.data.last_seq, gap.data.missing, gap.data.status) == (3, 5, 3, "open")
    assert gap.event_time == at(2 + 60)
    [raised] = events(out, "alert_raised")
    assert raised.data.alert_type == "pipeline_gap" and raised.data.level == 2
    assert "3 条" in raised.data.alert.message_content
    assert any(getattr(o, "command_id", None) for o in out)  # notified, like every alert

    # Snapshot and restore in the middle, as a resumed dataflow does.
    restored = GapStep.restore(GRACE, step.rules, step.snapshot())
    later = []
    for n in (3, 4, 5):
        later += restored.on_item(SeqMark("gw1", n, at(300 + n)))
    assert [e.data.status for e in events(later, "pipeline_gap")] == ["corrected", "corrected", "closed"]
    [cancelled] = events(later, "alert_cancelled")
    assert cancelled.data.reason == "problem_solved" and cancelled.data.alert_id == raised.data.alert_id


def test_replaying_the_same_marks_gives_the_same_events() -> None:
    def run(batch: list) -> list[str]:
        s = GapStep(GRACE, AlertRules(BusinessConfig().alerts, None))
        out = []
        for item in batch:
            out += s.on_item(item)
        return [o.to_json().decode() for o in out if hasattr(o, "event")]

    items = [*marks("gw1", [1, 2, 9, 10]), Tick(at(100)), SeqMark("gw1", 5, at(120)), Tick(at(200))]
    assert run(items) == run(items) and run(items)
