"""Replies (when, which robot, which text, after how long) and the life of a command (sent, completed,
failed, timed out, unknown) with robot health, through the sessions step with explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operators.replies import ReplyPlanner, TemplateReplies
from operators.sessions import SessionPolicy, SessionStep
from operators.shard import ClassifiedMessage, RobotRecord, RobotSighting
from operators.timers import Tick
from worktool.config import BusinessConfig
from worktool.events import MonitorEvent
from worktool.models import AcceptedBody, Classification, CommandRecord, Message, ResultCallback

# 02:00 UTC = 10:00 in Shanghai (day shift); 14:00 UTC = 22:00 (night shift).
DAY = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)
NIGHT = datetime(2026, 2, 10, 14, 0, tzinfo=UTC)
CONFIG = BusinessConfig.model_validate(
    {
        "robots": [
            {"robot_id": "wt_monitor", "name": "监控助手", "role": "monitor"},
            {"robot_id": "wt_notify", "name": "通知助手", "role": "notify"},
            {"robot_id": "wt_day", "name": "运营助理小A", "role": "reply_day"},
            {"robot_id": "wt_night", "name": "运营助理小夜", "role": "reply_night"},
        ],
        "staff": ["售后-小李"],
        "operators": ["运营-老周"],
    }
)
SID = "group:A群"


def message(
    text: str,
    when: datetime,
    sender: str = "用户甲",
    sender_type: str = "user",
    message_type: str | None = "chat_daily",
    need_reply: bool = True,
    robot: str = "wt_monitor",
    mentions: tuple[str, ...] = (),
    staff_command: str | None = None,
    group: str = "A群",
) -> ClassifiedMessage:
    m = Message(
        message_id=f"m_{text}_{when.timestamp()}", session_id=f"group:{group}", robot_id=robot, received_at=when,
        room_type=1, is_group=True, group_name=group, group_remark="", sender_name=sender, text=text, raw_text=text,
        text_type=1, content_kind="text", at_me=False, mentions=mentions, reply_target=group,
    )  # fmt: skip
    c = Classification(sender_type=sender_type, message_type=message_type, confidence=0.9, reason="test",
                       need_reply=need_reply, staff_command=staff_command)  # fmt: skip
    return ClassifiedMessage(m, c)


def events(out: list[Any], name: str) -> list[MonitorEvent]:
    return [e for e in out if isinstance(e, MonitorEvent) and e.event == name]


def commands(out: list[Any]) -> list[CommandRecord]:
    return [c for c in out if isinstance(c, CommandRecord)]


@pytest.fixture
def step() -> SessionStep:
    s = SessionStep(SessionPolicy(CONFIG))
    # Both reply robots and the monitor are known to sit in group A (they have reported messages there).
    s.on_item(message("大家好", DAY - timedelta(hours=1), robot="wt_day", need_reply=False))
    s.on_item(message("早", DAY - timedelta(hours=1), robot="wt_night", need_reply=False, sender="用户乙"))
    return s


# -- when and through whom -----------------------------------------------------------------------------


def test_a_question_gets_the_day_robots_reply_after_its_delay(step) -> None:
    out = step.on_item(message("佣金什么时候结算？", DAY))
    [scheduled] = events(out, "reply_scheduled")
    d = scheduled.data
    assert d.robot_id == "wt_day" and d.target == "A群" and 2 <= d.delay_s <= 8
    assert d.due_time == DAY + timedelta(seconds=d.delay_s)
    assert commands(out) == []  # nothing is sent before its delay
    out = step.on_item(Tick(d.due_time))
    [command] = commands(out)
    assert (command.robot_id, command.target, command.at_list) == ("wt_day", "A群", ["用户甲"])
    assert command.content.startswith("@用户甲 ") and command.due_time == d.due_time
    assert command.cause.event == "reply_scheduled" and command.cause.message_id == d.message_id
    assert events(out, "command_created")[0].data.command_id == command.command_id


def test_at_night_the_night_robot_answers_with_the_night_range(step) -> None:
    [scheduled] = events(step.on_item(message("在吗？", NIGHT)), "reply_scheduled")
    assert scheduled.data.robot_id == "wt_night" and 5 <= scheduled.data.delay_s <= 30


def test_without_the_shift_robot_in_the_group_the_reporting_reply_robot_answers_or_nobody(step) -> None:
    out = step.on_item(message("在吗？", DAY, group="B群", robot="wt_night"))
    [scheduled] = events(out, "reply_scheduled")
    [command] = commands(step.on_item(Tick(scheduled.data.due_time)))
    assert command.robot_id == "wt_night"
    out = step.on_item(message("在吗？", DAY + timedelta(minutes=1), group="C群", robot="wt_monitor"))
    [scheduled] = events(out, "reply_scheduled")  # the shift's robot, provisionally
    out = step.on_item(Tick(scheduled.data.due_time))
    assert commands(out) == [] and [e.data.reason for e in events(out, "reply_skipped")] == [
        "no_reply_robot_in_group"
    ]


def test_the_reply_robot_is_chosen_when_the_reply_is_due(step) -> None:
    """The monitor robot's report often arrives first; the day robot's own report of the same message,
    a moment later, is what tells us it sits in the group."""
    out = step.on_item(message("在吗？", DAY, group="D群", robot="wt_monitor"))
    [scheduled] = events(out, "reply_scheduled")
    step.on_item(
        RobotSighting("group:D群", "wt_day", DAY + timedelta(milliseconds=300), scheduled.data.message_id)
    )
    [command] = commands(step.on_item(Tick(scheduled.data.due_time)))
    assert command.robot_id == "wt_day"


def test_no_reply_to_staff_robots_or_owners_among_themselves(step) -> None:
    staff = message("好的", DAY, sender="售后-小李", sender_type="staff", message_type="staff_reply_user")
    robot = message("您好", DAY, sender="运营助理小A", sender_type="robot", message_type=None)
    peers = message("我也是", DAY, message_type="chat_complain_discuss", need_reply=False)
    for item in (robot, peers, staff):
        out = step.on_item(item)
        assert events(out, "reply_scheduled") == [] and events(out, "reply_skipped") == []


def test_a_reply_robot_mentioned_gets_a_reply_whatever_the_type(step) -> None:
    out = step.on_item(
        message(
            "@运营助理小A 看看", DAY, message_type="chat_other", need_reply=False, mentions=("运营助理小A",)
        )
    )
    assert events(out, "reply_scheduled")[0].data.robot_id == "wt_day"


def test_a_complaint_gets_an_urgent_soothing_reply(step) -> None:
    out = step.on_item(message("我要投诉你们", DAY, message_type="chat_complaint"))
    [scheduled] = events(out, "reply_scheduled")
    assert 1 <= scheduled.data.delay_s <= 2
    [command] = commands(step.on_item(Tick(scheduled.data.due_time)))
    assert "抱歉" in command.content


def test_an_after_sales_request_notifies_staff_through_the_notify_robot(step) -> None:
    out = step.on_item(message("需要扫码认证吗", DAY, message_type="chat_after_sales"))
    assert events(out, "reply_scheduled") and events(out, "task_created")
    sent = commands(step.on_item(Tick(DAY + timedelta(seconds=60))))
    notice = next(c for c in sent if c.cause.event == "after_sales_notify")
    reply = next(c for c in sent if c.cause.event == "reply_scheduled")
    assert (notice.robot_id, notice.target, notice.at_list) == ("wt_notify", "售后工作群", [])
    assert "用户甲" in notice.content and "扫码" in notice.content
    assert reply.robot_id == "wt_day"


def test_an_operators_harsh_words_get_a_soothing_reply_to_the_owner_named(step) -> None:
    out = step.on_item(message("@用户甲 马上配合！！！", DAY, sender="运营-老周", sender_type="operator",
                               message_type="operator_tone_hard", mentions=("用户甲",)))  # fmt: skip
    [scheduled] = events(out, "reply_scheduled")
    [command] = [
        c for c in commands(step.on_item(Tick(scheduled.data.due_time))) if c.cause.event == "reply_scheduled"
    ]
    assert command.at_list == ["用户甲"] and command.content.startswith("@用户甲 ")


def test_nothing_is_decided_while_staff_handle_the_session_or_replies_are_paused(step) -> None:
    step.on_item(
        message("我来处理", DAY, sender="售后-小李", sender_type="staff", message_type="staff_other")
    )
    out = step.on_item(message("在吗？", DAY + timedelta(minutes=1)))
    assert [e.data.reason for e in events(out, "reply_skipped")] == ["staff_handling"]
    step.on_item(message("[暂停回复]", DAY + timedelta(minutes=2), sender="售后-小李", sender_type="staff",
                         message_type="staff_other", staff_command="pause_replies"))  # fmt: skip
    out = step.on_item(message("在吗？", DAY + timedelta(minutes=30)))  # the window has closed; still paused
    assert [e.data.reason for e in events(out, "reply_skipped")] == ["replies_paused"]


def test_a_reply_not_sent_yet_is_withdrawn_when_staff_step_in(step) -> None:
    [scheduled] = events(step.on_item(message("佣金什么时候结算？", DAY)), "reply_scheduled")
    out = step.on_item(message("我来回答", DAY + timedelta(seconds=1), sender="售后-小李", sender_type="staff",
                               message_type="staff_reply_user"))  # fmt: skip
    [withdrawn] = events(out, "reply_withdrawn")
    assert (
        withdrawn.data.message_id == scheduled.data.message_id and withdrawn.data.reason == "staff_stepped_in"
    )
    assert commands(step.on_item(Tick(DAY + timedelta(minutes=1)))) == []


def test_delays_are_reproducible_and_within_the_configured_range() -> None:
    planner = ReplyPlanner(CONFIG)
    draws = [planner.delay(f"m_{i}", "day_shift_operation") for i in range(500)]
    assert draws == [ReplyPlanner(CONFIG).delay(f"m_{i}", "day_shift_operation") for i in range(500)]
    assert min(draws) >= 2 and max(draws) <= 8 and len(set(draws)) > 400
    assert planner.shift(DAY) == "day" and planner.shift(NIGHT) == "night"
    assert planner.shift(datetime(2026, 2, 10, 1, 0, tzinfo=UTC)) == "day"  # 09:00 Shanghai: day starts
    assert planner.shift(datetime(2026, 2, 10, 0, 59, tzinfo=UTC)) == "night"


def test_templates_fill_their_variables() -> None:
    writer = TemplateReplies({"chat_daily": "{{user}}您好，{{robot}}在{{group}}收到：{{ text }}"})
    assert (
        writer.write("chat_daily", user="甲", group="A群", text="在吗", robot="小A")
        == "甲您好，小A在A群收到：在吗"
    )


def test_templates_fill_like_a_substitution_of_each_variable() -> None:
    """Templates are split once and filled by position: the text is the one a substitution of every
    {{variable}} gives, for the default and the example configuration's templates, with values that
    look like templates or regex escapes, the text cut at 200 characters, and repeated fills."""
    import re
    from pathlib import Path

    import yaml

    example = yaml.safe_load((Path(__file__).parents[2] / "config/business.example.yaml").read_text("utf-8"))
    templates = {
        **BusinessConfig().replies.templates,
        **BusinessConfig.model_validate(example).replies.templates,
        "edges": "{{user}}{{user}}{{ robot }}，{{group}}：{{text}}",
        "plain": "没有变量",
    }
    writer = TemplateReplies(templates)
    values = {"user": r"\1 {{group}}", "group": "A群\\g<0>", "text": "字" * 300, "robot": "$小A"}

    def substituted(kind: str) -> str:
        filled = {**values, "text": values["text"][:200]}
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: filled[m.group(1)], templates[kind])

    assert any("{{" in t for t in templates.values())
    for _ in range(2):  # the second fill reuses the split
        for kind in templates:
            assert writer.write(kind, **values) == substituted(kind), kind
    assert writer.write("unknown_type", **values) == substituted("chat_daily")
    assert writer.write("edges", **values).startswith(values["user"] * 2 + "$小A，")


# -- commands and robot health -------------------------------------------------------------------------


def accepted(at: datetime, message_id: str, *commands: str, code: int = 0, reason: str = "") -> RobotRecord:
    body = AcceptedBody(messageId=message_id, commandIds=list(commands), errorCode=code, errorReason=reason)
    return RobotRecord("accepted", "wt_day", at, body)


def result(at: datetime, message_id: str, code: int = 0, reason: str = "") -> RobotRecord:
    return RobotRecord(
        "result", "wt_day", at, ResultCallback(messageId=message_id, errorCode=code, errorReason=reason)
    )


def test_a_batch_is_sent_then_each_command_ends_with_its_own_callback(step) -> None:
    out = step.on_item(accepted(DAY, "2020", "c1", "c2"))
    assert [e.data.command_id for e in events(out, "command_sent")] == ["c1", "c2"]
    out = step.on_item(result(DAY + timedelta(seconds=20), "2020"))
    assert [(e.data.command_id, e.data.status) for e in events(out, "command_result")] == [
        ("c1", "completed")
    ]
    out = step.on_item(result(DAY + timedelta(seconds=25), "2020", code=201102, reason="发送消息失败"))
    [failed] = events(out, "command_result")
    assert (failed.data.command_id, failed.data.status, failed.data.error_code) == ("c2", "failed", 201102)
    [health] = events(out, "robot_health")
    assert (health.data.score, health.data.band) == (65, "warning")  # 100 - 5 - 10 - 20 (failure < 5 min ago)
    assert events(step.on_item(Tick(DAY + timedelta(hours=1))), "command_timeout") == []


def test_no_result_times_out_is_looked_up_three_times_then_unknown(step) -> None:
    step.on_item(accepted(DAY, "3030", "c9"))
    timeline = []
    for seconds in (59.999, 60, 89.999, 90, 120, 150):
        out = step.on_item(Tick(DAY + timedelta(seconds=seconds)))
        timeline += [(seconds, e.event, getattr(e.data, "lookups", getattr(e.data, "status", None))) for e in
                     events(out, "command_timeout") + events(out, "command_result")]  # fmt: skip
    assert timeline == [
        (60, "command_timeout", 0),
        (90, "command_timeout", 1),
        (120, "command_timeout", 2),
        (150, "command_result", "unknown"),
    ]


def test_a_late_result_after_a_timeout_still_completes_the_command(step) -> None:
    step.on_item(accepted(DAY, "4040", "c7"))
    step.on_item(Tick(DAY + timedelta(seconds=70)))
    out = step.on_item(result(DAY + timedelta(seconds=75), "4040"))
    assert [e.data.status for e in events(out, "command_result")] == ["completed"]
    assert events(step.on_item(Tick(DAY + timedelta(minutes=10))), "command_result") == []


def test_a_failed_submission_fails_its_commands_and_a_lost_outcome_is_unknown(step) -> None:
    out = step.on_item(accepted(DAY, "", "c1", "c2", code=429, reason="rate limited 3 times"))
    assert {(e.data.command_id, e.data.status) for e in events(out, "command_result")} == {
        ("c1", "failed"),
        ("c2", "failed"),
    }
    out = step.on_item(accepted(DAY, "", "c3", code=-2, reason="outcome unknown after a dispatcher restart"))
    assert [e.data.status for e in events(out, "command_result")] == ["unknown"]


def test_health_falling_to_critical_raises_robot_fault_and_offline_scores_zero(step) -> None:
    for i in range(3):  # WorkTool refusing the sends: its own error code
        step.on_item(accepted(DAY + timedelta(seconds=i), "", f"c{i}", code=101013, reason="no permission"))
    fault = [e for e in step.sessions["robot:wt_day"].alerts.values() if e.alert_type == "robot_fault"]
    assert fault and fault[0].level == 3 and fault[0].message_content.startswith("健康分")
    out = step.on_item(RobotRecord("offline", "wt_night", DAY))
    [health] = events(out, "robot_health")
    assert (health.data.score, health.data.online) == (0, False)


def test_failures_that_are_not_the_robots_do_not_touch_its_health(step) -> None:
    """A rate limit, an HTTP error of the API, a refused connection or a command never sent say nothing
    about the robot; a phone or SMS webhook is no robot at all."""
    for code in (429, 503, -1, -3):
        out = step.on_item(accepted(DAY, "", f"c{code}", code=code, reason="not the robot"))
        assert events(out, "command_result") and events(out, "robot_health") == []
    body = AcceptedBody(messageId="", commandIds=["p1"], errorCode=500, errorReason="down", channel="phone")
    assert events(step.on_item(RobotRecord("accepted", "webhook:phone", DAY, body)), "robot_health") == []


def test_an_answer_recorded_twice_changes_nothing_the_second_time(step) -> None:
    step.on_item(accepted(DAY, "5050", "c1"))
    assert events(step.on_item(accepted(DAY + timedelta(seconds=1), "5050", "c1")), "command_sent") == []
    step.on_item(result(DAY + timedelta(seconds=5), "5050"))
    again = step.on_item(accepted(DAY + timedelta(seconds=6), "5050", "c1"))
    assert [e.event for e in again] == ["command_callback"]  # the raw answer is recorded; nothing else
    assert events(step.on_item(Tick(DAY + timedelta(minutes=10))), "command_result") == []
