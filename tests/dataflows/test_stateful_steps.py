"""The per-shard steps (operators/dedup.py, operators/sessions.py) driven directly, and through
bytewax's `op.stateful` (dataflows/stateful.py) under one and two workers, with a snapshot taken while a
timer is pending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflows.stateful import StepLogic, builder
from operators.classify import RuleClassifier
from operators.dedup import DedupStep
from operators.parse import parse_message
from operators.sessions import SessionPolicy, SessionStep
from operators.shard import ClassifiedMessage, ParsedMessage, RobotRecord, RobotSighting, shard_for
from operators.timers import Tick, Timer
from worktool.config import BusinessConfig
from worktool.events import InterventionNeeded, MonitorEvent
from worktool.models import DlqRecord, RawRecord

T0 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
CONFIG = BusinessConfig()
CLASSIFIER = RuleClassifier(CONFIG)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def parsed(text: str, seconds: float, robot: str = "wt_monitor", group: str = "A群", sender: str = "用户甲"):
    body = {"spoken": text, "rawSpoken": text, "receivedName": sender, "groupName": group, "roomType": 1}
    record = RawRecord(kind="message", robot_id=robot, received_at=at(seconds), body=body)
    return ParsedMessage(*parse_message(record))


def classified(text: str, seconds: float, group: str = "A群") -> ClassifiedMessage:
    m = parsed(text, seconds, group=group).message
    return ClassifiedMessage(m, CLASSIFIER.classify(m))


class PingStep(SessionStep):
    """A session step with one test rule: a message "ping" sets a 30-s timer in its session, "stop"
    cancels it; the timer says `intervention_needed` at its due time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timer_handlers["ping"] = self._pong

    def _on_message(self, s: Any, cm: ClassifiedMessage) -> list[Any]:
        events = super()._on_message(s, cm)
        m = cm.message
        if m.text == "ping":
            self.clock.schedule(m.received_at + timedelta(seconds=30), m.session_id, "ping", m.message_id)
        elif m.text == "stop":
            self.clock.cancel_key(m.session_id, "ping")
        return events

    def _pong(self, timer: Timer) -> list[MonitorEvent]:
        return [InterventionNeeded(message_id=timer.payload, reason="ping").at(timer.due, timer.key)]


def policy() -> SessionPolicy:
    return SessionPolicy(CONFIG)


def events_of(out: list[Any], name: str) -> list[MonitorEvent]:
    return [e for e in out if isinstance(e, MonitorEvent) and e.event == name]


# -- the steps, directly ---------------------------------------------------------------------------


def test_dedup_step_turns_copies_into_sightings_and_drops_exact_repeats() -> None:
    step = DedupStep(timedelta(seconds=10))
    first = parsed("在吗", 0, robot="wt_monitor")
    assert step.on_item(first) == [first.message]
    copy = parsed("在吗", 0.3, robot="wt_day")
    [sighting] = step.on_item(copy)
    assert sighting == RobotSighting(copy.message.session_id, "wt_day", at(0.3), first.message.message_id)
    assert step.on_item(copy) == []  # the very same record again (a spool redelivery)
    record = RobotRecord("online", "wt_day", at(1))
    assert step.on_item(record) == [record]
    tick = Tick(at(60))
    assert step.on_item(tick) == [tick] and len(step.dedup) == 0  # pruned behind the watermark
    resumed = DedupStep.restore(timedelta(seconds=10), DedupStep(timedelta(seconds=10)).snapshot())
    assert len(resumed.dedup) == 0


def test_dedup_snapshot_round_trip_keeps_what_was_seen() -> None:
    step = DedupStep(timedelta(seconds=10))
    step.on_item(parsed("在吗", 0, robot="wt_monitor"))
    step.on_item(parsed("在吗", 0.2, robot="wt_day"))
    resumed = DedupStep.restore(timedelta(seconds=10), step.snapshot())
    assert resumed.on_item(parsed("在吗", 0.2, robot="wt_day")) == []  # still known as an exact copy
    assert resumed.on_item(parsed("在吗", 0.5, robot="wt_night"))[0].robot_id == "wt_night"


def test_a_timer_fires_from_the_watermark_with_its_due_time() -> None:
    step = PingStep(policy())
    step.on_item(classified("ping", 0))
    assert events_of(step.on_item(Tick(at(29.9))), "intervention_needed") == []
    out = step.on_item(Tick(at(45)))
    [pong] = events_of(out, "intervention_needed")
    assert pong.event_time == at(30) and pong.session_id == "group:A群"
    assert out[-1] == Tick(at(45))  # the tick is forwarded after what it fired
    assert events_of(step.on_item(Tick(at(100))), "intervention_needed") == []  # exactly once


def test_a_sessions_own_record_fires_its_due_timer_before_it_is_applied() -> None:
    step = PingStep(policy())
    step.on_item(classified("ping", 0))
    other = step.on_item(classified("别的群", 40, group="B群"))
    assert events_of(other, "intervention_needed") == []  # another session's record fires nothing here
    out = step.on_item(classified("stop", 40))  # too late to cancel: the timer was due at 30
    assert [e.event for e in out] == ["intervention_needed", "message_classified"]
    assert out[0].event_time == at(30)


def test_a_cancelled_timer_never_fires() -> None:
    step = PingStep(policy())
    step.on_item(classified("ping", 0))
    step.on_item(classified("stop", 10))
    assert step.clock.timers_of("group:A群", "ping") == []
    assert events_of(step.on_item(Tick(at(100))), "intervention_needed") == []


def test_late_records_are_counted_and_still_applied() -> None:
    step = PingStep(policy())
    step.on_item(Tick(at(100)))
    out = step.on_item(classified("ping", 50))  # stamped before the watermark
    assert step.late_records == 1 and events_of(out, "message_classified")
    # Its timer (due 80) is already behind the watermark: it fires at the next tick, stamped 80.
    [pong] = events_of(step.on_item(Tick(at(100.5))), "intervention_needed")
    assert pong.event_time == at(80)


def test_idle_sessions_without_timers_are_dropped() -> None:
    step = PingStep(SessionPolicy(CONFIG, idle=timedelta(hours=1)))
    step.on_item(classified("你好", 0, group="A群"))
    step.on_item(classified("ping", 0, group="B群"))
    step.clock.schedule(at(86_400), "group:B群", "ping", "m")  # B keeps something pending
    step.on_item(Tick(at(7200)))
    assert set(step.sessions) == {"group:B群"}


def test_session_step_snapshot_is_plain_data_and_resumes() -> None:
    step = PingStep(policy())
    step.on_item(classified("ping", 0))
    step.on_item(RobotSighting("group:A群", "wt_day", at(0.2), "m"))
    resumed = PingStep.restore(policy(), step.snapshot())
    assert resumed.sessions["group:A群"].robots == {"wt_monitor", "wt_day"}
    out = resumed.on_item(classified("再来", 5))
    assert events_of(out, "message_classified")[0].data.session_message_count == 2
    [pong] = events_of(resumed.on_item(Tick(at(31))), "intervention_needed")
    assert pong.event_time == at(30)


def test_a_step_that_fails_on_one_item_sends_it_to_the_dlq_and_goes_on() -> None:
    class Fragile(PingStep):
        def _on_message(self, s: Any, cm: ClassifiedMessage) -> list[Any]:
            if cm.message.text == "boom":
                raise ValueError("cannot handle this")
            return super()._on_message(s, cm)

    logic = StepLogic("sessions", Fragile(policy()))
    [dlq], retain = logic.on_item(classified("boom", 0))
    assert isinstance(dlq, DlqRecord) and retain is False
    assert dlq.stage == "dataflow" and "sessions: ValueError: cannot handle this" in dlq.reason
    assert '"boom"' in dlq.raw
    out, _ = logic.on_item(classified("fine", 1))
    assert events_of(out, "message_classified")


# -- through bytewax, one and two workers, snapshot and resume -------------------------------------


def ping_flow(items: list[Any], out: list[Any], shards: int = 4) -> Dataflow:
    flow = Dataflow("stateful_steps")
    stream = op.input("in", flow, TestingSource(items, batch_size=3))

    def key(item: Any) -> list[tuple[str, Any]]:
        if isinstance(item, Tick):
            return [(str(s), item) for s in range(shards)]
        return [(shard_for(item.message.session_id, shards), item)]

    keyed = op.flat_map("shard", stream, key)
    stepped = op.stateful(
        "sessions",
        keyed,
        builder("sessions", lambda: PingStep(policy()), lambda s: PingStep.restore(policy(), s)),
    )
    op.output("out", op.key_rm("unkey", stepped), TestingSink(out))
    return flow


def ping_stream() -> list[Any]:
    items: list[Any] = []
    for g in range(6):
        items.append(classified("ping", g, group=f"群{g}"))
    items.append(classified("stop", 10, group="群0"))  # cancelled in time
    items.append(Tick(at(20)))
    items.append(classified("stop", 40, group="群1"))  # too late: fires first, from the record
    items.append(Tick(at(60)))
    return items


def pongs(out: list[Any]) -> list[tuple[str | None, datetime]]:
    return sorted((e.session_id, e.event_time) for e in events_of(out, "intervention_needed"))


EXPECTED = [(f"group:群{g}", at(g + 30)) for g in range(1, 6)]


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_timers_fire_once_at_their_due_time_under_one_and_two_workers(workers: int) -> None:
    out: list[Any] = []
    flow = ping_flow(ping_stream(), out)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert pongs(out) == EXPECTED
    assert len(events_of(out, "message_classified")) == 8


def test_a_timer_pending_at_a_crash_fires_exactly_once_after_resume(tmp_path) -> None:
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))
    items = ping_stream()
    cut = items.index(Tick(at(20))) + 1  # every ping is pending, none has fired
    items = [*items[:cut], TestingSource.ABORT(), *items[cut:]]
    out: list[Any] = []
    run_main(ping_flow(items, out), epoch_interval=timedelta(0), recovery_config=recovery)  # stops at ABORT
    assert pongs(out) == [] and len(events_of(out, "message_classified")) == 7
    run_main(ping_flow(items, out), epoch_interval=timedelta(0), recovery_config=recovery)  # resumes
    assert pongs(out) == EXPECTED
    assert len(events_of(out, "message_classified")) == 8  # nothing re-emitted: 0-s epochs
