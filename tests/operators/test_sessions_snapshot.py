"""The sessions step's snapshot (operators/sessions.py): pickled buckets, of which only those with a
key changed since the previous snapshot are built again (operators/snapshots.py), and still restorable
from the formats written before (v2, full subjects; v3, sparse subjects, one dict), which is what a
recovery directory of an older version holds (bytewax pickles the step's `snapshot()`).

tests/data/sessions_snapshot_v<N>.pickle is `pickle.dumps(step.snapshot())` after `BEFORE` by the code
of commit 96bb11a (the last with v2) or b8c564b (the last with v3), written by running this file with
that checkout first on the path:

    PYTHONPATH=<checkout of 96bb11a or b8c564b> .venv/bin/python tests/operators/test_sessions_snapshot.py
"""

from __future__ import annotations

import pickle
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from operators.sessions import SNAPSHOT_VERSION

T0 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURE = DATA / "sessions_snapshot_v2.pickle"
CONFIG_DATA = {
    "robots": [
        {"robot_id": "wt_notify", "name": "通知助手", "role": "notify"},
        {"robot_id": "wt_day", "name": "运营助理小A", "role": "reply_day"},
    ],
    "staff": ["售后-小李"],
    "operators": ["运营-老周"],
    "alerts": {"notifications": {"phone_targets": ["13800000000"], "sms_targets": ["13900000000"]}},
    # The fixtures were written before the template catalogue: the configured templates, as then.
    "replies": {"catalogue": False},
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def msg(group: str, text: str, minutes: float, sender: str = "用户甲", sender_type: str = "user",
        message_type: str | None = "chat_daily", sentiment: float = 0.0, mentions: tuple[str, ...] = (),
        staff_command: str | None = None, need_reply: bool = False) -> Any:  # fmt: skip
    from operators.shard import ClassifiedMessage
    from worktool.models import Classification, Message

    m = Message(
        message_id=f"m_{group}_{text}_{minutes}", session_id=f"group:{group}", robot_id="wt_day",
        received_at=at(minutes), room_type=1, is_group=True, group_name=group, group_remark="",
        sender_name=sender, text=text, raw_text=text, text_type=1, content_kind="text", at_me=False,
        mentions=mentions, reply_target=group,
    )  # fmt: skip
    c = Classification(
        sender_type=sender_type, message_type=message_type, confidence=0.9, reason="test",
        sentiment=sentiment, staff_command=staff_command, need_reply=need_reply,
    )  # fmt: skip
    return ClassifiedMessage(m, c)


def streams() -> tuple[list[Any], list[Any]]:
    """Items before the snapshot (leaving windows, waits, alerts, tasks, replies, a robot's ledger
    open) and after it (which fire and cancel them)."""
    from operators.shard import RobotRecord
    from operators.timers import Tick
    from worktool.models import AcceptedBody

    staff = {"sender": "售后-小李", "sender_type": "staff", "message_type": "staff_reply_user"}
    before = [
        Tick(at(0)),
        msg("A群", "佣金什么时候结算", 0, need_reply=True),
        msg("A群", "您好", 1, **staff),
        msg("A群", "我要投诉你们", 2, message_type="chat_complaint", sentiment=-0.8),
        msg("A群", "我要投诉你们!!", 3, message_type="chat_complaint", sentiment=-0.9),
        msg("A群", "马上配合扫码", 4, sender="运营-老周", sender_type="operator", message_type="operator_tone_hard"),
        msg("B群", "需要扫码认证吗", 5, message_type="chat_after_sales"),
        msg("B群", "@用户乙 请扫码", 6, mentions=("用户乙",), **{**staff, "message_type": "staff_at_user"}),
        msg("B群", "好的马上弄", 7, sender="用户乙"),
        msg("C群", "在吗", 8, need_reply=True),
        msg("C群", "[转人工]", 8.5, staff_command="handover", **staff),
        msg("C群", "我的号呢", 9),
        msg("D群", "我把橱窗商品删了", 10, message_type="chat_private_operation", sentiment=-0.2),
        RobotRecord("accepted", "wt_day", at(11), AcceptedBody(messageId="w1", commandIds=["c1", "c2"], errorCode=0)),
        RobotRecord("offline", "wt_notify", at(12)),
        msg("G群", "@用户丙 请实名", 11.5, mentions=("用户丙",), **{**staff, "message_type": "staff_at_user"}),
        msg("F群", "今天直播几点开始", 11.99, need_reply=True),
        Tick(at(12)),
    ]  # fmt: skip
    after = [
        Tick(at(20)),
        msg("A群", "好的谢谢", 25, sentiment=0.8),
        Tick(at(70)),
        msg("D群", "问题解决了", 80),
        RobotRecord("online", "wt_notify", at(90)),
        Tick(at(200)),
        Tick(at(2000)),
    ]
    return before, after


def policy() -> Any:
    from operators.sessions import SessionPolicy
    from worktool.config import BusinessConfig

    return SessionPolicy(BusinessConfig.model_validate(CONFIG_DATA))


def run(step: Any, items: list[Any]) -> list[str]:
    return [e.to_json() if hasattr(e, "to_json") else repr(e) for item in items for e in step.on_item(item)]


def plain(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot's content whatever its layout: sessions, timers by seq, users by key."""
    from operators.sessions import plain_snapshot

    data = plain_snapshot(snapshot)
    return {**data, "satisfaction": {**data["satisfaction"], "users": sorted(data["satisfaction"]["users"])}}


@pytest.mark.parametrize("version", [2, 3])
def test_a_snapshot_written_by_the_code_before_resumes_like_the_step_that_never_stopped(version: int) -> None:
    from operators.sessions import SessionStep

    before, after = streams()
    old = pickle.loads((DATA / f"sessions_snapshot_v{version}.pickle").read_bytes())
    assert old["v"] == version and isinstance(old["sessions"], dict)
    if version == 2:
        assert "message_count" in old["sessions"]["group:A群"]  # the full format
    step = SessionStep(policy())
    run(step, before)
    resumed = SessionStep.restore(policy(), old)
    assert resumed.snapshot()["v"] == SNAPSHOT_VERSION
    # The rules changed since these were written (an @ waits only for an owner with a task, private
    # operations open tasks, tasks move to waiting_user / in_progress, each unanswered message waits), so
    # the step that never stopped differs there; the rest of each conversation goes on the same.
    original, replayed = run(step, after), run(resumed, after)
    # A reply planned before the snapshot was written without a persona or template id (issue 16).
    kept = untouched_by_task_rules(without_reply_provenance(original))
    assert kept == untouched_by_task_rules(without_reply_provenance(replayed))
    assert len(kept) > 10
    # and the restored step resumes deterministically from its own snapshot
    again = SessionStep.restore(policy(), SessionStep.restore(policy(), old).snapshot())
    assert run(again, after) == replayed


# Events the rule changes of issue 15 can add or remove around an old snapshot: tasks (operators/tasks.py)
# and the alerts around them, and a wait per unanswered message (intervention_needed, staff_no_reply);
# customer profiles (operators/profiles.py), which an old snapshot does not hold: they start afresh.
TASK_RULE_EVENTS = (
    "task_", "user_response", "alert_", "command_created", "intervention_needed", "customer_updated",
)  # fmt: skip


REPLY_PROVENANCE = ("persona", "template_id")  # reply_scheduled's and command_created's, since issue 16


def without_reply_provenance(lines: list[Any]) -> list[Any]:
    """Event lines without the persona and template id of replies and commands (absent before issue 16)."""
    import orjson

    out = []
    for line in lines:
        if isinstance(line, bytes) and (
            b'"event":"reply_scheduled"' in line or b'"event":"command_created"' in line
        ):
            event = orjson.loads(line)
            for name in REPLY_PROVENANCE if "data" in event else ():  # (not a command record)
                event["data"].pop(name, None)
            line = orjson.dumps(event)
        out.append(line)
    return out


def untouched_by_task_rules(lines: list[Any]) -> list[Any]:
    return [
        line for line in lines
        if not (isinstance(line, bytes) and any(f'"event":"{p}'.encode() in line for p in TASK_RULE_EVENTS))
        and not (isinstance(line, bytes) and b'"command_id"' in line and b'"event":' not in line)
    ]  # fmt: skip


def from_scratch(step: Any) -> dict[str, Any]:
    """The step's content built from its live state, not through the cached buckets."""
    clock = step.clock.snapshot()
    clock["timers"].sort(key=lambda t: t[1])
    return {
        "v": 3,
        "clock": clock,
        "sessions": {sid: s.snapshot() for sid, s in step.sessions.items()},
        "satisfaction": {
            **step.satisfaction.snapshot(),
            "users": sorted(step.satisfaction.snapshot()["users"]),
        },
        "swept_at": step.swept_at,
    }


def test_the_snapshot_equals_one_built_from_scratch_at_every_point() -> None:
    """Only buckets with a changed key are built again: after any item, the snapshot holds the full
    state, and a step restored from it goes on exactly like the one that never stopped."""
    from operators.sessions import SessionStep

    before, after = streams()
    items = before + after
    step = SessionStep(policy())
    for n, item in enumerate(items):
        step.on_item(item)
        snap = step.snapshot()
        assert snap["v"] == SNAPSHOT_VERSION and all(isinstance(b, bytes) for b in snap["sessions"])
        assert plain(snap) == from_scratch(step)
        resumed = SessionStep.restore(policy(), pickle.loads(pickle.dumps(snap)))
        assert plain(resumed.snapshot()) == plain(snap)
        if n % 5 == 0:  # the rest of the stream gives the same events from the restored step
            twin = SessionStep.restore(policy(), pickle.loads(pickle.dumps(snap)))
            probe = SessionStep.restore(policy(), pickle.loads(pickle.dumps(snap)))
            assert run(twin, items[n + 1 :]) == run(probe, items[n + 1 :])


def test_many_sessions_restore_and_go_on_like_the_step_that_never_stopped() -> None:
    """Enough subjects for many buckets (and a resize on the way): a restored step equals the original,
    also after more items, and a snapshot re-pickles only the buckets of what changed."""
    from operators.sessions import SessionStep
    from operators.timers import Tick

    step = SessionStep(policy())
    first = [
        msg(f"G{i}", "佣金什么时候结算", i / 100, need_reply=i % 3 == 0, sentiment=0.5 * (i % 2))
        for i in range(600)
    ]
    run(step, [Tick(at(0)), *first])
    snap = step.snapshot()
    assert len(snap["sessions"]) >= 16 and len(snap["clock"]["timers"]) >= 8
    resumed = SessionStep.restore(policy(), pickle.loads(pickle.dumps(snap)))
    first = resumed.snapshot()  # after a restart: the buckets go on as they were, none pickled again
    assert first["sessions"] == snap["sessions"] and first["clock"] == snap["clock"]
    assert first["satisfaction"] == snap["satisfaction"]
    assert plain(first) == plain(snap) == from_scratch(step)
    again = step.snapshot()
    assert all(a is b for a, b in zip(again["sessions"], snap["sessions"], strict=True))  # nothing re-pickled
    more = [msg("G7", "好的谢谢", 7, sentiment=0.9), msg("G300", "在吗", 9.5, need_reply=True)]
    original, replayed = run(step, more), run(resumed, more)
    assert original == replayed and original
    after = step.snapshot()
    changed = sum(a is not b for a, b in zip(after["sessions"], snap["sessions"], strict=True))
    assert 1 <= changed <= 2  # the buckets of G7 and G300
    assert plain(after) == plain(resumed.snapshot()) == from_scratch(step)
    ticks = [Tick(at(9)), Tick(at(30)), Tick(at(2000))]  # every wait, window and alert fires
    original, replayed = run(step, ticks), run(resumed, ticks)
    assert original == replayed and len(original) > 100
    assert plain(step.snapshot()) == plain(resumed.snapshot()) == from_scratch(step)


def test_a_snapshot_already_taken_does_not_change_as_the_state_goes_on() -> None:
    from operators.sessions import SessionStep

    before, after = streams()
    step = SessionStep(policy())
    run(step, before)
    snap = step.snapshot()
    frozen = pickle.dumps(snap)
    content = plain(snap)
    run(step, after)
    later = step.snapshot()
    assert pickle.dumps(snap) == frozen and plain(snap) == content
    assert plain(later) != content


def test_an_idle_session_is_sparse_in_the_snapshot() -> None:
    from operators.sessions import SessionStep

    step = SessionStep(policy())
    step.on_item(msg("E群", "好的收到", 0))
    assert plain(step.snapshot())["sessions"]["group:E群"] == {
        "last_at": at(0), "message_count": 1, "robots": ["wt_day"], "last_sender_type": "user",
        # the owner's profile: first and last seen, group, messages by type, satisfaction and its scores,
        # waiting since, customer_updated at and the standing it told; the rest at its defaults is left out
        "profiles": {"用户甲": (at(0), at(0), "E群", {"chat_daily": 1}, 0.5, [0.5], at(0), at(0),
                               (83, "healthy", 0, 0, 0, 0, (), (), 0, 0, 0, None))},
    }  # fmt: skip


def test_an_unknown_version_is_refused() -> None:
    from operators.sessions import SessionStep

    with pytest.raises(ValueError, match="version"):
        SessionStep.restore(policy(), {"v": 99})


if __name__ == "__main__":  # writes the v2 fixture: see the module doc
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from operators.sessions import SessionStep

    step = SessionStep(policy())
    run(step, streams()[0])
    snapshot = step.snapshot()
    assert snapshot["v"] in (2, 3), "run this with the code of 96bb11a or b8c564b first on the path"
    fixture = DATA / f"sessions_snapshot_v{snapshot['v']}.pickle"
    fixture.write_bytes(pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL))
    print(f"wrote {fixture} ({len(snapshot['sessions'])} subjects)")
