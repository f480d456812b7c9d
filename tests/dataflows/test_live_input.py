"""The live flow reads Kafka and the wall-clock ticks in one bytewax input step.

bytewax stops polling a partition that has started a new epoch until every input has finished the
previous one, and an input changes epoch only when it is woken. The ticks used to be a second input,
woken once per tick interval, so at every snapshot boundary the Kafka partitions waited up to a tick
interval for it: the tail of the reaction time (benchmarks/README.md, "Webhook to reply decision").
Parts of one input change epoch in the same activation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dataflows.sources import TICK_PART, ArchiveSource, TickSource, WithTicks
from operators.timers import Tick
from worktool.settings import get_settings

pytestmark = pytest.mark.integration


def test_the_live_flow_has_one_input_step_with_a_tick_partition(settings_factory, unique_topics, monkeypatch):
    from dataflows.main import live_flow

    settings = settings_factory(**unique_topics())
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        flow = live_flow()
    finally:
        get_settings.cache_clear()
    inputs = [step for step in flow.substeps if type(step).__name__ == "input"]
    assert len(inputs) == 1, [step.step_id for step in inputs]
    parts = inputs[0].source.list_parts()
    assert TICK_PART in parts
    assert any(part.endswith(settings.topic_raw) for part in parts)
    assert any(part.endswith(settings.topic_control) for part in parts)


def test_the_tick_partition_ticks_and_keeps_no_state(tmp_path: Path) -> None:
    archive = tmp_path / "empty.jsonl"
    archive.write_text("", encoding="utf-8")
    source = WithTicks(
        ArchiveSource(archive, timedelta(minutes=1)), TickSource(timedelta(hours=1), timedelta(seconds=2))
    )
    assert source.list_parts() == ["archive", TICK_PART]
    part = source.build_part("input_0", TICK_PART, "anything saved before")
    before = datetime.now(UTC)
    (tick,) = part.next_batch()
    assert isinstance(tick, Tick)
    assert tick.at <= datetime.now(UTC) - timedelta(seconds=2)
    assert part.next_batch() == []  # the next one is an hour away, and so is its wake-up
    assert part.next_awake() >= before + timedelta(minutes=59)
    assert part.snapshot() is None
    with pytest.raises(StopIteration):  # the other parts are the inner source's own
        source.build_part("input_0", "archive", None).next_batch()
