"""The event-time rules of the sessions step (operators/sessions.py, operators/alerts.py), driven
directly with explicit times: staff windows, inline commands, the four intervention situations, alert
transitions at the edges of their windows, the five cancellations, notifications by level, late records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operators.alerts import Trigger
from operators.sessions import SessionPolicy, SessionStep, Subject
from operators.shard import ClassifiedMessage, RobotRecord
from operators.timers import Tick
from worktool.config import BusinessConfig
from worktool.events import MonitorEvent
from worktool.models import Classification, CommandRecord, ControlRecord, Message

T0 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
CONFIG = BusinessConfig.model_validate(
    {
        "robots": [{"robot_id": "wt_notify", "name": "通知助手", "role": "notify"}],
        "staff": ["售后-小李"],
        "operators": ["运营-老周"],
        "alerts": {"notifications": {"phone_targets": ["13800000000"], "sms_targets": ["13900000000"]}},
    }
)
SID = "group:A群"
MS = timedelta(milliseconds=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def message(
    text: str,
    minutes: float | datetime,
    sender: str = "用户甲",
    sender_type: str = "user",
    message_type: str | None = "chat_daily",
    sentiment: float = 0.0,
    mentions: tuple[str, ...] = (),
    staff_command: str | None = None,
) -> ClassifiedMessage:
    when = minutes if isinstance(minutes, datetime) else at(minutes)
    m = Message(
        message_id=f"m_{text}_{when.timestamp()}",
        session_id=SID,
        robot_id="wt_monitor",
        received_at=when,
        room_type=1,
        is_group=True,
        group_name="A群",
        group_remark="",
        sender_name=sender,
        text=text,
        raw_text=text,
        text_type=1,
        content_kind="text",
        at_me=False,
        mentions=mentions,
        reply_target="A群",
    )
    c = Classification(
        sender_type=sender_type, message_type=message_type, confidence=0.9, reason="test",
        sentiment=sentiment, staff_command=staff_command,
    )  # fmt: skip
    return ClassifiedMessage(m, c)


def staff(text: str, minutes: float | datetime, **kw: Any) -> ClassifiedMessage:
    kw.setdefault("message_type", "staff_reply_user")
    return message(text, minutes, sender="售后-小李", sender_type="staff", **kw)


def events(out: list[Any], name: str | None = None) -> list[MonitorEvent]:
    return [e for e in out if isinstance(e, MonitorEvent) and (name is None or e.event == name)]


def commands(out: list[Any]) -> list[CommandRecord]:
    return [c for c in out if isinstance(c, CommandRecord)]


@pytest.fixture
def step() -> SessionStep:
    return SessionStep(SessionPolicy(CONFIG))


def alert_of(step: SessionStep, alert_type: str, subject: str = SID):
    return next(a for a in step.sessions[subject].alerts.values() if a.alert_type == alert_type)


# -- staff-active window ---------------------------------------------------------------------------


def test_staff_window_opens_moves_on_and_closes_exactly_ten_minutes_after_the_last_staff_message(
    step,
) -> None:
    out = step.on_item(staff("您好，我来处理", 0))
    [opened] = events(out, "staff_window_opened")
    assert opened.data.until == at(10)
    [state] = events(out, "session_state")
    assert (state.data.status, state.data.change) == ("staff", "staff_window_opened")

    out = step.on_item(staff("已经在看了，稍等", 5))
    assert events(out, "staff_window_opened") == []
    assert events(out, "session_state")[0].data.staff_active_until == at(15)

    assert events(step.on_item(Tick(at(15) - MS))) == []
    out = step.on_item(Tick(at(15)))
    [closed] = events(out, "staff_window_closed")
    assert closed.event_time == at(15) and closed.data.opened_at == at(0)
    assert events(out, "session_state")[0].data.status == "auto"


def test_a_staff_message_exactly_at_the_window_end_closes_then_reopens_it(step) -> None:
    step.on_item(staff("您好", 0))
    out = step.on_item(staff("还在吗", 10))
    names = [e.event for e in events(out)]
    assert names.index("staff_window_closed") < names.index("message_classified")
    assert events(out, "staff_window_opened")[0].data.until == at(20)


def test_inline_commands_pause_resume_and_hand_over(step) -> None:
    out = step.on_item(staff("[暂停回复]", 0, message_type="staff_other", staff_command="pause_replies"))
    assert events(out, "session_state")[0].data.ai_paused is True
    step.on_item(staff("[转人工]", 1, message_type="staff_other", staff_command="handover"))
    out = step.on_item(Tick(at(30)))  # the window ends; the handover stays
    assert step.sessions[SID].status == "handover" and events(out, "staff_window_closed")
    out = step.on_item(staff("[恢复回复]", 40, message_type="staff_other", staff_command="resume_replies"))
    state = events(out, "session_state")[-1].data
    assert (state.ai_paused, state.status, state.change) == (False, "staff", "replies_resumed")


# -- the four intervention situations -----------------------------------------------------------------


def test_a_complaint_needs_intervention_and_raises_a_level_4_alert_with_every_channel(step) -> None:
    out = step.on_item(message("我要投诉你们", 0, message_type="chat_complaint", sentiment=-0.1))
    [need] = events(out, "intervention_needed")
    assert need.data.reason == "complaint"
    [raised] = events(out, "alert_raised")
    assert (raised.data.alert_type, raised.data.level) == ("user_complaint", 4)
    channels = sorted((c.channel, c.target) for c in commands(out))
    assert channels == [("phone", "13800000000"), ("sms", "13900000000"), ("wecom", "售后工作群")]
    wecom = next(c for c in commands(out) if c.channel == "wecom")
    assert wecom.robot_id == "wt_notify" and "紧急" in wecom.content and raised.data.alert_id in wecom.content
    assert len(events(out, "command_created")) == 3


def test_a_negative_reply_to_staff_needs_intervention(step) -> None:
    step.on_item(staff("请您提供一下手机号", 0))
    out = step.on_item(message("烦死了，天天要这要那", 1, sentiment=-0.6))
    assert [e.data.reason for e in events(out, "intervention_needed")] == ["user_negative_after_staff"]


def test_a_dismissive_or_empty_staff_reply_needs_intervention(step) -> None:
    out = step.on_item(staff("不知道，你自己看", 0))
    assert [e.data.reason for e in events(out, "intervention_needed")] == ["staff_low_reply_quality"]
    out = step.on_item(staff("您好，扫码后点击确认，然后等两分钟就可以了", 1))
    assert events(out, "intervention_needed") == []


def test_satisfaction_falling_below_the_threshold_needs_intervention_and_alerts(step) -> None:
    reasons, alerts = [], []
    for i in range(6):
        out = step.on_item(message(f"太差了{i}", i, sentiment=-0.9))
        reasons += [e.data.reason for e in events(out, "intervention_needed")]
        alerts += [e.data.alert_type for e in events(out, "alert_raised")]
    assert reasons.count("user_low_satisfaction") == 1  # on crossing, not on every message below
    assert alerts == ["low_satisfaction"]


def test_a_user_waiting_thirty_minutes_while_staff_handle_the_session(step) -> None:
    step.on_item(staff("您好", 0))
    step.on_item(message("好的，我等一下", 1))
    step.on_item(message("还要多久", 5))  # the wait counts from the oldest unanswered message
    assert events(step.on_item(Tick(at(31) - MS)), "intervention_needed") == []
    out = step.on_item(Tick(at(31)))
    [need] = events(out, "intervention_needed")
    assert need.event_time == at(31) and need.data.reason == "user_waiting_too_long"
    assert need.data.message_id.startswith("m_好的，我等一下")
    [raised] = events(out, "alert_raised")
    assert (raised.data.alert_type, raised.data.level) == ("staff_no_reply", 1)


def test_a_second_unanswered_message_repeats_staff_no_reply_and_escalates_it(step) -> None:
    """§4: the second message's wait runs out within 30 min of the first trigger: level 2."""
    step.on_item(staff("您好", 0))
    step.on_item(message("好的，我等一下", 1))
    step.on_item(message("还要多久", 5))
    out = step.on_item(Tick(at(31)))
    assert [e.data.level for e in events(out, "alert_raised")] == [1]
    out = step.on_item(Tick(at(35)))
    [need] = events(out, "intervention_needed")
    assert need.data.message_id.startswith("m_还要多久")
    [escalated] = events(out, "alert_escalated")
    assert (escalated.data.alert.alert_type, escalated.data.from_level, escalated.data.to_level) == (
        "staff_no_reply",
        1,
        2,
    )


def test_a_staff_answer_ends_every_wait(step) -> None:
    step.on_item(staff("您好", 0))
    step.on_item(message("在吗", 1))
    step.on_item(message("人呢", 2))
    step.on_item(staff("在的，马上处理", 20))
    assert events(step.on_item(Tick(at(60))), "intervention_needed") == []


def test_a_staff_answer_before_thirty_minutes_ends_the_wait(step) -> None:
    step.on_item(staff("您好", 0))
    step.on_item(message("在吗", 1))
    step.on_item(staff("在的，马上处理", at(31) - MS))  # 1 ms before the wait is due
    assert events(step.on_item(Tick(at(60))), "intervention_needed") == []


def test_no_wait_is_started_while_nobody_from_staff_handles_the_session(step) -> None:
    step.on_item(message("在吗", 0))
    assert events(step.on_item(Tick(at(120))), "intervention_needed") == []


# -- escalation by repeat ----------------------------------------------------------------------------


def harsh(minutes: float | datetime) -> ClassifiedMessage:
    return message(
        "马上给我配合！！！",
        minutes,
        sender="运营-老周",
        sender_type="operator",
        message_type="operator_tone_hard",
    )


def test_escalation_windows_are_inclusive_and_level_4_is_the_ceiling(step) -> None:
    out = step.on_item(harsh(0))
    assert events(out, "alert_raised")[0].data.level == 2
    out = step.on_item(harsh(60))  # exactly 60 min after the previous trigger: 2 -> 3
    [esc] = events(out, "alert_escalated")
    assert (esc.data.from_level, esc.data.to_level) == (2, 3)
    notices = [c for c in commands(out) if c.cause.event == "alert_escalated"]
    assert sorted(c.channel for c in notices) == ["phone", "wecom"]  # the 10-min reminder fired first
    assert [c.cause.event for c in commands(out) if c not in notices] == ["alert_reminder"]
    out = step.on_item(harsh(150))  # exactly 90 min later: 3 -> 4
    assert [(e.data.from_level, e.data.to_level) for e in events(out, "alert_escalated")] == [(3, 4)]
    out = step.on_item(harsh(151))  # at the ceiling: re-notified? not within 5 min of the last notice
    [again] = events(out, "alert_retriggered")
    assert (again.data.level, again.data.notified) == (4, False) and commands(out) == []
    out = step.on_item(harsh(160))
    assert events(out, "alert_retriggered")[0].data.notified is True and commands(out)
    alert = alert_of(step, "operator_harsh")
    assert [(f, t, by) for _, f, t, by in alert.escalation_history] == [(2, 3, "repeat"), (3, 4, "repeat")]
    assert alert.trigger_count == 5 and alert.status == "escalated"


def test_a_repeat_just_outside_the_window_renotifies_at_the_same_level(step) -> None:
    step.on_item(staff("您好", 0))
    step.on_item(message("在吗", 1))
    step.on_item(Tick(at(31)))  # staff_no_reply, level 1, at 31
    step.on_item(staff("稍等", 32))  # cancels it (staff intervened) ...
    assert alert_of(step, "staff_no_reply").status == "cancelled"
    step.on_item(message("还在等", 33))
    out = step.on_item(Tick(at(63)))  # ... so this is a new alert, linked to the cancelled one
    [raised] = events(out, "alert_raised")
    assert raised.data.level == 1 and raised.data.alert.parent_alert_id is not None


def test_level_1_escalates_within_thirty_minutes_not_after(step) -> None:
    rules, clock, alerts = step.policy.alerts, step.clock, Subject().alerts

    def trig(when: datetime) -> list[Any]:
        return rules.trigger(
            alerts, clock, Trigger("staff_no_reply", SID, when, user_name="用户甲", session_id=SID)
        )

    assert events(trig(at(0)), "alert_raised")[0].data.level == 1
    assert events(trig(at(30) + MS), "alert_retriggered")[0].data.level == 1  # 30 min + 1 ms: outside
    assert events(trig(at(60) + MS), "alert_escalated")[0].data.to_level == 2  # within 30 of the last trigger


# -- the five cancellations ---------------------------------------------------------------------------


def test_staff_intervened_cancels_the_sessions_open_alerts(step) -> None:
    step.on_item(message("我要投诉", 0, message_type="chat_complaint", sentiment=-0.1))
    out = step.on_item(staff("非常抱歉，我马上处理", 2))
    [cancelled] = events(out, "alert_cancelled")
    assert cancelled.data.reason == "staff_intervened" and cancelled.data.alert.cancelled_by == "售后-小李"


def test_user_satisfied_cancels_that_users_alerts_only(step) -> None:
    step.on_item(message("把视频删了", 0, message_type="chat_private_operation"))
    step.on_item(message("商品我下架了", 0.5, sender="用户乙", message_type="chat_private_operation"))
    out = step.on_item(message("谢谢你们，太好了", 3, sentiment=0.8))
    assert [(e.data.reason, e.data.alert.user_name) for e in events(out, "alert_cancelled")] == [
        ("user_satisfied", "用户甲")
    ]


def test_problem_solved_by_the_user_or_by_staff(step) -> None:
    step.on_item(message("我要投诉", 0, message_type="chat_complaint", sentiment=-0.8))
    out = step.on_item(message("现在解决了", 1))
    assert events(out, "alert_cancelled")[0].data.reason == "problem_solved"
    step.on_item(message("又不行了，我要投诉", 2, message_type="chat_complaint", sentiment=-0.8))
    out = step.on_item(staff("[已解决]", 3, message_type="staff_other", staff_command="solved"))
    assert [e.data.reason for e in events(out, "alert_cancelled")] == ["problem_solved"]


def test_an_alert_expires_exactly_24_hours_after_its_last_trigger(step) -> None:
    step.on_item(harsh(0))
    step.on_item(harsh(600))  # outside the 60-min window: re-notified, expiry moves to 600 + 1440
    assert events(step.on_item(Tick(at(2040) - MS)), "alert_cancelled") == []
    out = step.on_item(Tick(at(2040)))
    [expired] = events(out, "alert_cancelled")
    assert expired.event_time == at(2040) and expired.data.reason == "expired"
    assert step.clock.pending(SID) == 0 or all(t.kind == "alert_reminder" for t in step.clock.timers_of(SID))


def test_manual_cancel_and_escalate_through_control_records(step) -> None:
    step.on_item(harsh(0))
    alert_id = alert_of(step, "operator_harsh").alert_id

    def control(action: str, minutes: float) -> ControlRecord:
        return ControlRecord(action=action, at=at(minutes), actor="主管", reason="测试", request_id=f"r{minutes}",
                             alert_id=alert_id, session_id=SID)  # fmt: skip

    out = step.on_item(control("escalate_alert", 1))
    [esc] = events(out, "alert_escalated")
    assert (esc.data.to_level, esc.data.alert.escalation_history[-1].by) == (3, "manual:主管")
    out = step.on_item(control("cancel_alert", 2))
    [cancelled] = events(out, "alert_cancelled")
    assert (cancelled.data.reason, cancelled.data.alert.cancelled_by) == ("manual", "主管")
    assert step.on_item(control("cancel_alert", 3)) == []  # closed: nothing happens twice


def test_a_control_request_written_twice_is_applied_once(step) -> None:
    step.on_item(harsh(0))
    alert_id = alert_of(step, "operator_harsh").alert_id
    request = ControlRecord(action="escalate_alert", at=at(1), actor="主管", request_id="same", alert_id=alert_id,
                            session_id=SID)  # fmt: skip
    assert events(step.on_item(request), "alert_escalated")
    assert step.on_item(request.model_copy(update={"at": at(2)})) == []
    assert alert_of(step, "operator_harsh").level == 3


# -- notifications, reminders -------------------------------------------------------------------------


def test_level_2_adds_a_reminder_only_if_the_alert_is_still_open(step) -> None:
    step.on_item(harsh(0))
    out = step.on_item(Tick(at(10)))
    [reminder] = commands(out)
    assert "提醒" in reminder.content and reminder.due_time == at(10)
    step.on_item(harsh(100))  # re-notified (outside 60): a new reminder at 110 ...
    step.on_item(staff("我来处理", 105))  # ... but staff intervened before it
    assert commands(step.on_item(Tick(at(120)))) == []


def test_command_ids_are_deterministic(step) -> None:
    first = commands(SessionStep(SessionPolicy(CONFIG)).on_item(harsh(0)))
    again = commands(SessionStep(SessionPolicy(CONFIG)).on_item(harsh(0)))
    assert [c.command_id for c in first] == [c.command_id for c in again]


# -- staff @ an owner: response and follow-up ----------------------------------------------------------


def _asks(step, minute: float = -1) -> None:
    """用户甲 has an open task (the waits after a staff @ belong to a task)."""
    step.on_item(message("需要扫码认证吗", minute, message_type="chat_after_sales"))


def test_an_owner_not_answering_a_staff_at_for_60_minutes(step) -> None:
    _asks(step)
    step.on_item(staff("@用户甲 请扫一下码", 0, message_type="staff_at_user", mentions=("用户甲",)))
    out = step.on_item(Tick(at(60)))
    [raised] = events(out, "alert_raised")
    assert (raised.data.alert_type, raised.data.level, raised.event_time) == (
        "user_not_cooperating",
        2,
        at(60),
    )


def test_an_at_of_an_owner_without_a_task_starts_no_wait(step) -> None:
    step.on_item(staff("@用户甲 早上好，有问题随时说", 0, message_type="staff_at_user", mentions=("用户甲",)))
    step.on_item(message("好的", 20))  # an answer, but to no task: no follow-up is owed
    out = step.on_item(Tick(at(120)))
    assert events(out, "alert_raised") == [] and events(out, "user_response") == []


def test_an_owner_answering_then_staff_idle_three_minutes(step) -> None:
    _asks(step)
    step.on_item(staff("@用户甲 请扫一下码", 0, message_type="staff_at_user", mentions=("用户甲",)))
    step.on_item(message("好的", 20))
    out = step.on_item(Tick(at(23)))
    assert [e.data.alert_type for e in events(out, "alert_raised")] == ["task_not_followed_up"]
    assert events(step.on_item(Tick(at(90))), "alert_raised") == []  # the response stopped the 60-min clock


def test_staff_following_up_in_time_raises_nothing(step) -> None:
    _asks(step)
    step.on_item(staff("@用户甲 请扫一下码", 0, message_type="staff_at_user", mentions=("用户甲",)))
    step.on_item(message("在的", 20))
    step.on_item(staff("好的我发您二维码", 22))
    assert events(step.on_item(Tick(at(200))), "alert_raised") == []


# -- robots, tasks, late records, snapshot -------------------------------------------------------------


def test_a_robot_going_offline_raises_robot_fault_and_online_cancels_it(step) -> None:
    out = step.on_item(RobotRecord("offline", "wt_day", at(0)))
    [raised] = events(out, "alert_raised")
    assert (raised.data.alert_type, raised.data.level, raised.robot_id) == ("robot_fault", 3, "wt_day")
    out = step.on_item(RobotRecord("online", "wt_day", at(5)))
    assert events(out, "alert_cancelled")[0].data.reason == "problem_solved"


def test_an_after_sales_request_opens_a_task_that_alerts_after_1440_minutes(step) -> None:
    out = step.on_item(message("需要扫码认证吗", 0, message_type="chat_after_sales"))
    [task] = events(out, "task_created")
    assert (task.data.task_type, task.data.priority) == ("scan_qr", "high")
    step.on_item(message("怎么扫码", 1, message_type="chat_after_sales"))  # same user: no second task
    out = step.on_item(Tick(at(1440)))
    assert [e.data.alert_type for e in events(out, "alert_raised")] == ["task_unfinished"]


def test_a_late_record_is_counted_and_its_due_timers_fire_at_the_next_tick(step) -> None:
    _asks(step, 9)
    step.on_item(Tick(at(100)))
    step.on_item(
        staff("@用户甲 请扫码", 10, message_type="staff_at_user", mentions=("用户甲",))
    )  # 90 min late
    assert step.late_records == 1
    out = step.on_item(Tick(at(100) + MS))
    [raised] = events(out, "alert_raised")
    assert raised.event_time == at(70)  # its due time, not the tick's
    [reminder] = events(out, "task_reminder")
    assert reminder.event_time == at(40)


def test_a_snapshot_in_the_middle_of_everything_resumes_identically(step) -> None:
    stream = [
        staff("您好", 0),
        message("我要投诉", 1, message_type="chat_complaint", sentiment=-0.8),
        harsh(2),
        staff("@用户甲 请扫码", 3, message_type="staff_at_user", mentions=("用户甲",)),
        message("需要扫码认证吗", 4, sender="用户乙", message_type="chat_after_sales"),
    ]
    later = [Tick(at(30)), message("好的", 40), Tick(at(200)), Tick(at(3000))]
    for item in stream:
        step.on_item(item)
    resumed = SessionStep.restore(SessionPolicy(CONFIG), step.snapshot())
    original = [e.to_json() for item in later for e in step.on_item(item) if hasattr(e, "to_json")]
    replayed = [e.to_json() for item in later for e in resumed.on_item(item) if hasattr(e, "to_json")]
    assert original == replayed and len(original) > 10
