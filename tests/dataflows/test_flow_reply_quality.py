"""Staff reply quality through the dataflow (docs/rules.md §3 situation 2): raw callbacks in, the rule
classifier types a dismissive answer that starts with an @ of the owner as a task @ (staff_at_user); it
is scored all the same, needs intervention, and its @ still starts the owner's response clock (§7)."""

from __future__ import annotations

from datetime import timedelta

from bytewax.testing import TestingSink, TestingSource

from dataflows.flow import FlowOptions, FlowSinks, build_flow
from operators.classify import RuleClassifier
from tests.dataflows.records import msg, raw, with_ticks
from worktool.config import BusinessConfig

CONFIG = BusinessConfig(staff=["售后-小李"])
OWNER = "用户甲"


def at_owner(text: str, group: str) -> dict:
    return msg(text, "售后-小李", group, rawSpoken=f"@{OWNER}\u2005{text}")


def records() -> list[bytes]:
    """In time order. A群: an after-sales question (it opens a task), brushed off with an @ of the owner;
    B群: a question answered helpfully, with an @; C群: a lone "嗯" without an @; D群: later traffic that
    moves event time past the owner's 60-minute response clock."""
    return [
        raw("message", "wt_monitor", 0, msg("需要扫码认证吗", OWNER, "A群")),
        raw("message", "wt_monitor", 10, msg("我的佣金什么时候到账？", OWNER, "B群")),
        raw("message", "wt_monitor", 20, msg("视频号怎么突然不能直播了", OWNER, "C群")),
        raw("message", "wt_monitor", 80, msg("嗯", "售后-小李", "C群")),
        raw("message", "wt_monitor", 120, at_owner("你自己去问运营", "A群")),
        raw("message", "wt_monitor", 200, at_owner("佣金7天一结，每周二到账，这周的已经打款了", "B群")),
        raw("message", "wt_monitor", 3900, msg("大家早", "用户乙", "D群")),
    ]


def run(items, entry_point):
    events: list = []
    flow = build_flow(
        TestingSource(items, batch_size=3),
        FlowSinks(events=[TestingSink(events)]),
        RuleClassifier(CONFIG),
        FlowOptions(shards=4, dedup_window=timedelta(seconds=10), config=CONFIG),
    )
    entry_point(flow, epoch_interval=timedelta(0))
    return events


def test_a_dismissive_at_answer_raises_staff_low_reply_quality_and_stays_a_task_at(entry_point) -> None:
    events = run(with_ticks(records()), entry_point)
    staff = {
        e.session_id: e.data
        for e in events
        if e.event == "message_classified" and e.data.sender_type == "staff"
    }
    brushed, helped, hummed = staff["group:A群"], staff["group:B群"], staff["group:C群"]
    assert brushed.message_type == "staff_at_user"  # the rules take it for a task @ ...
    assert brushed.reply_quality is not None and brushed.reply_quality < 0.5  # ... and it is scored
    assert brushed.reply_quality_source == "rules" and "redirect" in (brushed.reply_quality_reason or "")
    assert helped.reply_quality is not None and helped.reply_quality >= 0.5
    assert hummed.reply_quality is not None and hummed.reply_quality < 0.5

    needed = {
        (e.session_id, e.data.message_id, e.data.reason) for e in events if e.event == "intervention_needed"
    }
    assert needed == {
        ("group:A群", brushed.message_id, "staff_low_reply_quality"),
        ("group:C群", hummed.message_id, "staff_low_reply_quality"),
    }
    # the @ still worked as a task @: the task waits for the owner, who never answers
    statuses = [e.data.status for e in events if e.event == "task_status" and e.session_id == "group:A群"]
    assert "waiting_user" in statuses
    raised = [
        e.data.alert.alert_type for e in events if e.event == "alert_raised" and e.session_id == "group:A群"
    ]
    assert raised == ["user_not_cooperating"]
