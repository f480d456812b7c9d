"""The desk's control records through the whole flow: the sessions step forwards those of the session
"desk" (assign_task, staff_status) to the desk step (dataflows/flow.py `_to_desk`), which applies them in
event time. The desk's own logic is tested in tests/operators/test_desk.py."""

from datetime import timedelta

from bytewax.testing import TestingSink, TestingSource

from dataflows.flow import FlowOptions, FlowSinks, build_flow
from operators.classify import RuleClassifier
from tests.dataflows.records import T0, msg, raw, with_ticks
from tests.support import ENTRY_POINTS
from worktool.config import AfterSalesConfig, BusinessConfig, DeskMember, RobotConfig
from worktool.models import ControlRecord

CONFIG = BusinessConfig(
    robots=[RobotConfig(robot_id="wt_day", name="运营助理小A", role="reply_day")],
    staff=["售后-小李", "售后-小张"],
    after_sales=AfterSalesConfig(
        desk=[
            DeskMember(name="售后-小李", skills=["verification"], on_duty=[]),
            DeskMember(name="售后-小张", on_duty=[]),
        ]
    ),
)
ASK = raw("message", "wt_monitor", 0, msg("我的视频号发不了作品，需要扫码认证吗", "用户甲"))
LATER = raw("message", "wt_monitor", 120, msg("今天天气不错", "用户乙", "B群"))  # moves the watermark


def run(items: list) -> list:
    events: list = []
    flow = build_flow(
        TestingSource(items, batch_size=5),
        FlowSinks(events=[TestingSink(events)]),
        RuleClassifier(CONFIG),
        FlowOptions(shards=4, dedup_window=timedelta(seconds=10), config=CONFIG),
    )
    ENTRY_POINTS["run_main"](flow, epoch_interval=timedelta(0))
    return events


def control(seconds: float, action: str, request_id: str, **fields) -> bytes:
    return ControlRecord(
        action=action, at=T0 + timedelta(seconds=seconds), actor="主管", request_id=request_id, **fields
    ).to_json()


def test_a_reassignment_and_an_availability_from_the_console_reach_the_desk() -> None:
    [created] = [e for e in run(with_ticks([ASK, LATER])) if e.event == "task_created"]
    task_id = created.data.task_id
    items = with_ticks([ASK, LATER])
    at = next(i for i, x in enumerate(items) if x == LATER)
    items[at:at] = [
        control(30, "assign_task", "r1", task_id=task_id, staff_name="售后-小张"),
        control(40, "staff_status", "r2", staff_name="售后-小李", staff_status="busy"),
    ]
    events = run(items)
    assigned = [(e.data.assignee, e.data.auto, e.data.by) for e in events if e.event == "task_assigned"]
    assert assigned == [("售后-小李", True, None), ("售后-小张", False, "主管")]  # the skill, then by hand
    statuses = [(e.data.name, e.data.status) for e in events if e.event == "staff_status"]
    assert statuses == [("售后-小李", "busy")]
