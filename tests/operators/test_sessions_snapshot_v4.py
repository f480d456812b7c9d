"""Snapshots of format v4 written by the code before the sessions step was split into parts
(operators/conversation.py, tasks.py, robots.py, alerts.py; commit 275480a) restore, and the restored
step goes on with the very events that code gave.

Two fixtures in tests/data, each a pickle of {"snapshot", "items", "events"}: the step's snapshot part way
through a stream, the items after it, and the event lines (`to_json()` / repr) the old code gave for
them from its snapshot.

- sessions_snapshot_v4.pickle: the hand-built stream of test_sessions_snapshot.py (windows, waits,
  alerts, tasks, an owner's response clock, replies, a robot's ledger left open).
- sessions_snapshot_v4_day.pickle: the sample day (commands/data/sample_day.jsonl) parsed, de-duplicated
  and classified by the rules with config/business.example.yaml, snapshot after its first half; the items
  are stored classified, so the fixture does not depend on the classifier.

Written by running this file with the checkout of 275480a first on the path:

    PYTHONPATH=<checkout of 275480a> .venv/bin/python tests/operators/test_sessions_snapshot_v4.py
"""

from __future__ import annotations

import pickle
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
FIXTURES = {"streams": DATA / "sessions_snapshot_v4.pickle", "day": DATA / "sessions_snapshot_v4_day.pickle"}
DAY = ROOT / "commands" / "data" / "sample_day.jsonl"
DAY_CONFIG = ROOT / "config" / "business.example.yaml"


def day_policy() -> Any:
    from operators.sessions import SessionPolicy
    from worktool.config import load_config

    config = load_config(DAY_CONFIG)
    # The fixtures were written before the template catalogue: the configured templates, as then.
    return SessionPolicy(
        config.model_copy(update={"replies": config.replies.model_copy(update={"catalogue": False})})
    )


def day_items() -> list[Any]:
    """The sample day as the sessions step of one shard sees it: parsed, de-duplicated, classified, with a
    tick (the watermark) before each record that moves past a minute."""
    from dataflows.flow import _parse
    from operators.classify import RuleClassifier
    from operators.dedup import DedupStep
    from operators.shard import ClassifiedMessage, ParsedMessage
    from operators.timers import Tick
    from worktool.config import load_config
    from worktool.models import Message

    classifier = RuleClassifier(load_config(DAY_CONFIG))
    dedup = DedupStep(timedelta(seconds=10))
    items: list[Any] = []
    tick = None
    for line in DAY.read_bytes().splitlines():
        parsed, _ = _parse(line)
        if parsed is None:
            continue
        stamp = parsed.message.received_at if isinstance(parsed, ParsedMessage) else parsed.received_at
        boundary = stamp.replace(second=0, microsecond=0)
        if tick is None or boundary > tick:
            tick = boundary
            items.append(Tick(boundary))
        for out in dedup.on_item(parsed):
            if isinstance(out, Message):
                out = ClassifiedMessage(out, classifier.classify(out))
            items.append(out)
    items.append(Tick(tick + timedelta(days=2)))  # every window, wait, task and alert fires
    return items


def scenario(name: str) -> tuple[Any, list[Any], list[Any]]:
    """(policy, items before the snapshot, items after it)."""
    if name == "streams":
        from tests.operators.test_sessions_snapshot import policy, streams

        before, after = streams()
        return policy(), before, after
    items = day_items()
    half = len(items) // 2
    return day_policy(), items[:half], items[half:]


def policy_of(name: str) -> Any:
    if name == "streams":
        from tests.operators.test_sessions_snapshot import policy

        return policy()
    return day_policy()


def run(step: Any, items: list[Any]) -> list[str]:
    return [e.to_json() if hasattr(e, "to_json") else repr(e) for item in items for e in step.on_item(item)]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_a_v4_snapshot_of_the_code_before_the_split_resumes_with_the_same_events(name: str) -> None:
    from operators.sessions import SessionStep, plain_snapshot
    from tests.operators.test_sessions_snapshot import untouched_by_task_rules

    fixture = pickle.loads(FIXTURES[name].read_bytes())
    old = fixture["snapshot"]
    assert old["v"] == 4
    resumed = SessionStep.restore(policy_of(name), old)
    # Nothing changed yet: the buckets go on as they were, and read back the same state.
    again = resumed.snapshot()
    assert again["sessions"] == old["sessions"] and again["clock"] == old["clock"]
    assert plain_snapshot(again) == plain_snapshot(old)
    # Every subject's plain data, built again by the new code, is what the old code wrote.
    rebuilt = {sid: s.snapshot() for sid, s in resumed.sessions.items()}
    assert rebuilt == plain_snapshot(old)["sessions"]
    events = run(resumed, [_current(item) for item in fixture["items"]])
    # The task rules changed after the split (issue 15: an @ waits only for an owner with a task, private
    # operations open tasks, tasks move through their states), so the events around tasks differ; the
    # rest of each conversation goes on exactly as the code before gave it.
    kept = untouched_by_task_rules([_without_added(e) for e in events])
    assert kept == untouched_by_task_rules([_without_added(e) for e in fixture["events"]]) and len(kept) > 20


# Optional event fields added since the fixtures were written (null when unused): task_status's reason/by;
# the persona and template id of replies and commands (issue 16), set by the new code whenever it plans.
_ADDED = {"task_status": ("reason", "by")}
# ...and message_classified's reply-quality score (issue 16): set on the staff answers the old code did not
# score, so dropped whatever their value.
_SCORED = {"message_classified": ("reply_quality", "reply_quality_source", "reply_quality_reason")}


def _current(item: Any) -> Any:
    """An item as the current code builds it: a Classification pickled before a field was added lacks
    the attribute (pydantic restores the pickled __dict__ as it was)."""
    from operators.shard import ClassifiedMessage
    from worktool.models import Classification

    if isinstance(item, ClassifiedMessage):
        return ClassifiedMessage(item.message, Classification(**item.classification.__dict__))
    return item


_PROVENANCE = {"reply_scheduled": ("persona", "template_id"), "command_created": ("persona", "template_id")}


def _without_added(line: Any) -> Any:
    if not isinstance(line, bytes):
        return line
    event = orjson.loads(line)
    if "event" not in event:  # a command record: how an LLM reply was written (issue 16), null here
        if "reply" in event and event["reply"] is None:
            event.pop("reply")
            return orjson.dumps(event)
        return line
    for name in _ADDED.get(event.get("event"), ()):
        if event["data"].get(name) is None:
            event["data"].pop(name, None)
    for name in (*_SCORED.get(event.get("event"), ()), *_PROVENANCE.get(event.get("event"), ())):
        event["data"].pop(name, None)
    return orjson.dumps(event)


if __name__ == "__main__":  # writes the fixtures: see the module doc
    sys.path.append(str(ROOT))  # after PYTHONPATH: the checkout named there is the code that writes
    from operators.sessions import SNAPSHOT_VERSION, SessionStep

    assert SNAPSHOT_VERSION == 4, "run this with the code of 275480a first on the path"
    for name, path in FIXTURES.items():
        policy, before, after = scenario(name)
        step = SessionStep(policy)
        run(step, before)
        snapshot = pickle.loads(pickle.dumps(step.snapshot()))
        events = run(SessionStep.restore(policy_of(name), snapshot), after)
        data = {"snapshot": snapshot, "items": after, "events": events}
        path.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        print(f"wrote {path} ({len(after)} items after the snapshot, {len(events)} events)")
