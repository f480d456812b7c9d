"""The flow's event metrics: counted per batch by type (`observe_events`) they are what counting every
event on its own (`observe_event`) gives."""

from __future__ import annotations

import io

from prometheus_client import REGISTRY

from dataflows.event_metrics import observe_event, observe_events
from dataflows.replay import replay_archive
from tests.support import REPO
from worktool.events import MonitorEvent, parse_event
from worktool.settings import Settings

SAMPLE = REPO / "commands" / "data" / "sample_day.jsonl"


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in REGISTRY.collect()
        if metric.name.startswith(("worktool_dataflow_", "worktool_pipeline_gap"))
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def moved(before: dict, after: dict) -> dict:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def test_counting_a_batch_by_type_is_counting_each_event() -> None:
    out = io.BytesIO()
    replay_archive(SAMPLE, out, settings=Settings(config_path=REPO / "config" / "business.example.yaml"))
    events: list[MonitorEvent] = [parse_event(line) for line in out.getvalue().splitlines()]
    bare = MonitorEvent.model_validate(events[0].model_dump())  # an untyped envelope counts by its name
    events.append(bare)
    assert len({type(e) for e in events}) > 5

    start = samples()
    for e in events:
        observe_event("test", e)
    one_by_one = moved(start, samples())
    start = samples()
    observe_events(events)
    batched = moved(start, samples())
    assert batched == one_by_one
