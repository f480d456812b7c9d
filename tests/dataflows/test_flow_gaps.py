"""Loss detection through the whole flow (docs/rules.md §9): raw records stamped by a gateway, some of
them dropped on purpose, reach the dataflow; the missing numbers are reported as a pipeline_gap event
and alert and counted in worktool_pipeline_gap_records_total; a late one corrects the gap."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import REGISTRY

from dataflows.flow import FlowOptions, FlowSinks, build_flow
from operators.classify import RuleClassifier
from tests.dataflows.records import msg, raw, with_ticks
from tests.support import chaos_scale
from worktool.config import BusinessConfig

CONFIG = BusinessConfig()


def stamped(n: int, seconds: float, gw: str = "gw-test") -> bytes:
    record = orjson.loads(raw("message", "wt_monitor", seconds, msg(f"第{n}条", f"用户{n % 3}")))
    return orjson.dumps({**record, "seq": {"gw": gw, "n": n}})


def run(items: list) -> list:
    events: list = []
    flow = build_flow(
        TestingSource(items, batch_size=7),
        FlowSinks(events=[TestingSink(events)]),
        RuleClassifier(CONFIG),
        FlowOptions(shards=4, config=CONFIG, gap_grace=timedelta(seconds=60)),
    )
    run_main(flow, epoch_interval=timedelta(0))
    return events


def gap_records() -> float:
    return REGISTRY.get_sample_value("worktool_pipeline_gap_records_total") or 0.0


@pytest.mark.chaos
def test_records_dropped_on_purpose_raise_a_pipeline_gap() -> None:
    total = 40 * chaos_scale()
    dropped = set(range(10, total, 7))
    records = [stamped(n, n * 0.5) for n in range(1, total + 1) if n not in dropped]
    records.append(stamped(total + 1, total * 0.5 + 300))  # time passes: the grace is over
    before = gap_records()
    events = run(with_ticks(records))
    gaps = [e for e in events if e.event == "pipeline_gap"]
    assert sorted((g.data.first_seq, g.data.missing) for g in gaps) == sorted((n, 1) for n in dropped)
    assert {g.data.status for g in gaps} == {"open"}
    raised = [e for e in events if e.event == "alert_raised" and e.data.alert_type == "pipeline_gap"]
    assert len(raised) == 1  # one alert per gateway; later gaps repeat (and escalate) it
    assert gap_records() - before == len(dropped)
    # Every record that did arrive was processed as usual.
    assert sum(e.event == "message_classified" for e in events) == total + 1 - len(dropped)


@pytest.mark.chaos
def test_a_dropped_record_that_arrives_late_closes_the_gap_and_the_alert() -> None:
    records = [stamped(n, n) for n in (1, 2, 4, 5)]
    records.append(stamped(6, 200))  # the gap of 3 is reported before this one
    records.append(stamped(3, 201))  # ...and then the spool delivers it after all
    events = run(with_ticks(records))
    statuses = [e.data.status for e in events if e.event == "pipeline_gap"]
    assert statuses == ["open", "closed"]
    alerts = [e.event for e in events if e.event.startswith("alert_")]
    assert alerts == ["alert_raised", "alert_cancelled"]


def test_records_without_a_stamp_are_not_counted() -> None:
    """Archives from before the field, and the dispatcher's records, carry no seq: nothing to report."""
    records = [raw("message", "wt_monitor", n, msg(f"第{n}条", "用户")) for n in range(5)]
    events = run(with_ticks(records))
    assert not [e for e in events if e.event == "pipeline_gap"]
