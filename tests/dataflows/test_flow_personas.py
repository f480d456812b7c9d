"""A recorded day replayed with the rules gives template replies chosen by persona and scenario (issue 16):
the example configuration's day robot answers as `community` (its group 社群), the night robot as
`assistant` (the default), notices to staff as `service` (the notify role); every reply names its
catalogue template, which admits that persona, kind and shift; the same replay gives the same replies."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.dataflows.test_rules_replay import run_day
from worktool.catalogue import shipped_catalogue
from worktool.events import MonitorEvent


@pytest.fixture(scope="module")
def day() -> list[MonitorEvent]:
    return run_day(1000, 1)


def test_replies_of_the_day_come_from_the_catalogue_by_persona_and_scenario(day: list[MonitorEvent]) -> None:
    catalogue = shipped_catalogue()
    classified = {e.data.message_id: e.data for e in day if e.event == "message_classified"}
    scheduled = [e for e in day if e.event == "reply_scheduled"]
    assert len(scheduled) >= 5
    personas = Counter()
    for e in scheduled:
        d = e.data
        personas[(d.robot_id, d.persona)] += 1
        template = catalogue.by_id(d.template_id)
        assert template is not None, d.template_id
        kind = classified[d.message_id].message_type
        assert kind in template.message_types
        assert not template.personas or d.persona in template.personas
    assert {persona for (_, persona) in personas} <= {"community", "assistant"}
    assert all(
        persona == {"wt_day_01": "community", "wt_night_01": "assistant"}[robot]
        for robot, persona in personas
    )
    assert personas[("wt_day_01", "community")] > 0

    created = [e.data for e in day if e.event == "command_created"]
    replies = {c.cause_id: c for c in created if c.cause_event == "reply_scheduled"}
    assert replies
    for e in scheduled:
        command = replies.get(e.data.message_id)
        if command is not None:  # (else withdrawn, or skipped when due)
            assert (command.persona, command.template_id) == (e.data.persona, e.data.template_id)
    notices = [c for c in created if c.cause_event == "after_sales_notify"]
    assert notices and all(
        c.persona == "service" and c.template_id.startswith("tpl_handover_") for c in notices
    )
    # several variants in one day, not one text per type
    assert len({e.data.template_id for e in scheduled}) >= 3


def test_the_same_day_replays_to_the_same_replies(day: list[MonitorEvent]) -> None:
    def replies(events: list[MonitorEvent]) -> list[tuple]:
        return sorted(
            (e.data.command_id, e.data.content, e.data.persona, e.data.template_id)
            for e in events
            if e.event == "command_created"
        )

    assert replies(day) == replies(run_day(7, 1))
