"""The after-sales desk (operators/desk.py): auto-assignment in event time, waiting tasks and the
supervisor's alert, duty hours, manual assignment, reminders, and the same decisions whatever order the
shards' outputs arrive in."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.alerts import AlertRules
from operators.desk import DeskPolicy, DeskStep, DeskTask, WaitingQueue
from operators.timers import Tick
from worktool.config import BusinessConfig
from worktool.events import (
    AlertEscalated,
    AlertRaised,
    MonitorEvent,
    TaskCreated,
    TaskReminder,
    TaskStatus,
    TaskUpdated,
    UserResponse,
)
from worktool.models import CommandRecord, ControlRecord

SHARDS = ("0", "1")
T0 = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


def config(**after_sales) -> BusinessConfig:
    desk = after_sales.pop(
        "desk",
        [
            {"name": "售后小王", "skills": ["verification"], "max_open_tasks": 2},
            {"name": "售后小李", "skills": ["account"], "max_open_tasks": 2},
        ],
    )
    return BusinessConfig.model_validate(
        {
            "staff": [m["name"] for m in desk],
            "robots": [{"robot_id": "wt_notify", "name": "通知助手", "role": "notify"}],
            "after_sales": {"desk": desk, **after_sales},
        }
    )


def desk(cfg: BusinessConfig | None = None) -> DeskStep:
    cfg = cfg or config()
    return DeskStep(DeskPolicy(cfg, AlertRules(cfg.alerts, "wt_notify"), shards=len(SHARDS)))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def created(task: str, minute: float, task_type: str = "other", priority: str = "normal", shard: str = "0"):
    data = TaskCreated.make(task_id=task, task_type=task_type, priority=priority, user_name=f"用户{task}",
                            group_name="视频号运营A群", message_id=None, description="帮我看看")  # fmt: skip
    return shard, data.at(at(minute), f"group:{task}", "wt_day")


def status(task: str, minute: float, value: str = "completed", shard: str = "0"):
    return shard, TaskStatus.make(task_id=task, status=value).at(at(minute), f"group:{task}")


def control(minute: float, action: str, request: str, shard: str = "0", **fields):
    return shard, ControlRecord(action=action, at=at(minute), actor="主管", request_id=request, **fields)


def ticks(minute: float) -> list[tuple[str, Tick]]:
    return [(s, Tick(at(minute))) for s in SHARDS]


def run(step: DeskStep, items) -> list:
    out = []
    for item in items:
        out += step.on_item(item)
    return out


def events(out, name: str) -> list:
    return [o for o in out if isinstance(o, MonitorEvent) and o.event == name]


def assigned(out) -> list[tuple[str, str]]:
    return [(e.data.task_id, e.data.assignee) for e in events(out, "task_assigned")]


def test_nothing_is_decided_before_every_shard_has_passed_the_task():
    step = desk()
    out = run(step, [created("t1", 1), ("0", Tick(at(5)))])
    assert out == []  # shard 1 has not ticked: it could still send something earlier
    out = run(step, [("1", Tick(at(2)))])
    assert assigned(out) == [("t1", "售后小王")]
    assert [e.data.status for e in events(out, "task_status")] == ["assigned"]


def test_online_first_then_fewest_open_then_skill_then_round_robin():
    step = desk(config(desk=[
        {"name": "甲", "skills": [], "max_open_tasks": 5},
        {"name": "乙", "skills": ["verification"], "max_open_tasks": 5},
        {"name": "丙", "skills": [], "max_open_tasks": 5},
    ]))  # fmt: skip
    out = run(step, [
        control(0, "staff_status", "r1", staff_name="甲", staff_status="busy"),
        created("t1", 1), created("t2", 2), created("t3", 3, "scan_qr"), created("t4", 4), created("t5", 5),
        *ticks(10),
    ])  # fmt: skip
    # t1: 乙 and 丙 online with 0 open, no skill wanted: config order -> 乙; t2: 丙 (fewest open);
    # t3 (verification): 乙 and 丙 at 1, 乙 has the skill; t4: 丙 (fewer open);
    # t5: 乙 and 丙 at 2, neither skilled for "other": round-robin -> 乙 (assigned least recently)
    assert assigned(out) == [("t1", "乙"), ("t2", "丙"), ("t3", "乙"), ("t4", "丙"), ("t5", "乙")]
    notices = [o for o in out if isinstance(o, CommandRecord)]
    assert len(notices) == 5 and notices[0].at_list == ["乙"] and notices[0].robot_id == "wt_notify"
    assert notices[0].content.startswith("@乙 新售后任务「其他售后」")
    assert [e.data.status for e in events(out, "staff_status")] == ["busy"]


def test_a_busy_member_takes_tasks_only_when_nobody_online_can():
    step = desk()
    out = run(step, [
        control(0, "staff_status", "r1", staff_name="售后小王", staff_status="busy"),
        created("t1", 1), created("t2", 2), created("t3", 3), *ticks(5),
    ])  # fmt: skip
    # 小李 (online) takes two, then is full (max 2): the busy 小王 gets the third
    assert assigned(out) == [("t1", "售后小李"), ("t2", "售后小李"), ("t3", "售后小王")]


def test_nobody_available_the_task_waits_and_the_supervisor_is_alerted_until_someone_comes_online():
    step = desk()
    out = run(step, [
        control(0, "staff_status", "r1", staff_name="售后小王", staff_status="offline"),
        control(0, "staff_status", "r2", staff_name="售后小李", staff_status="offline"),
        created("t1", 1, "private_operation", "urgent"), created("t2", 2), *ticks(3),
    ])  # fmt: skip
    assert assigned(out) == []
    raised = events(out, "alert_raised") + events(out, "alert_escalated") + events(out, "alert_retriggered")
    assert raised and raised[0].data.alert_type == "no_staff_available"
    assert raised[0].data.level == 2  # start level of no_staff_available
    out = run(
        step, [control(20, "staff_status", "r3", staff_name="售后小李", staff_status="online"), *ticks(21)]
    )
    # urgent first, then the older task; both to the one online member (max 2)
    assert assigned(out) == [("t1", "售后小李"), ("t2", "售后小李")]
    assert [e.data.waited_minutes for e in events(out, "task_assigned")] == [19, 18]
    cancelled = events(out, "alert_cancelled")
    assert len(cancelled) == 1 and cancelled[0].data.reason == "problem_solved"


def test_a_full_desk_serves_the_waiting_task_when_a_task_closes():
    step = desk(config(desk=[{"name": "甲", "max_open_tasks": 1}]))
    out = run(step, [created("t1", 1), created("t2", 2), *ticks(3)])
    assert assigned(out) == [("t1", "甲")]
    out = run(step, [status("t1", 30), *ticks(31)])
    assert assigned(out) == [("t2", "甲")]
    assert events(out, "alert_cancelled")[0].data.reason == "problem_solved"


def test_a_task_opened_off_duty_waits_for_the_first_member_on_duty():
    step = desk(
        config(desk=[{"name": "甲", "on_duty": ["09:00-18:00"]}, {"name": "乙", "on_duty": ["10:00-22:00"]}])
    )
    night = 14 * 60 + 30  # 00:30 local the next day
    out = run(step, [*ticks(0), created("t1", night), *ticks(night + 1)])
    assert assigned(out) == [] and events(out, "alert_raised")
    morning = night + 8.5 * 60  # 09:00 local
    out = run(step, [*ticks(morning + 5)])
    assert assigned(out) == [("t1", "甲")]
    assert events(out, "task_assigned")[0].event_time == at(morning)  # at the start of 甲's duty


def test_a_duty_range_may_run_past_midnight():
    cfg = config(desk=[{"name": "夜班", "on_duty": ["22:00-06:00"]}])
    policy = DeskPolicy(cfg, AlertRules(cfg.alerts, None), shards=1)
    member = cfg.after_sales.desk[0]
    assert policy.on_duty(member, datetime(2026, 12, 3, 15, 0, tzinfo=UTC))  # 23:00 local
    assert policy.on_duty(member, datetime(2026, 12, 3, 21, 59, tzinfo=UTC))  # 05:59 local
    assert not policy.on_duty(member, datetime(2026, 12, 3, 22, 0, tzinfo=UTC))  # 06:00 local


def test_manual_assignment_moves_the_task_once():
    step = desk()
    run(step, [created("t1", 1), *ticks(2)])
    move = control(3, "assign_task", "r9", task_id="t1", staff_name="售后小李")
    out = run(step, [move, move, *ticks(4)])  # the same request twice (a producer's retry)
    got = events(out, "task_assigned")
    assert [(e.data.assignee, e.data.previous, e.data.auto, e.data.by) for e in got] == [
        ("售后小李", "售后小王", False, "主管")
    ]
    assert step.members["售后小王"].open_tasks == [] and step.members["售后小李"].open_tasks == ["t1"]
    assert events(out, "task_status") == []  # already assigned: the status does not move back


def test_a_reminder_reaches_the_assignee():
    step = desk()
    reminder = TaskReminder.make(task_id="t1", user_name="用户t1", minutes=30).at(at(40), "group:t1")
    out = run(step, [created("t1", 1), *ticks(2), ("0", reminder), *ticks(41)])
    commands = [o for o in out if isinstance(o, CommandRecord) and o.cause.event == "task_reminder"]
    assert len(commands) == 1
    assert commands[0].content.startswith(
        "@售后小王 【跟进提醒】视频号运营A群 用户t1的「其他售后」任务：用户已 30 分钟"
    )


def _story() -> list:
    return [
        control(0, "staff_status", "r1", staff_name="售后小李", staff_status="offline"),
        created("t1", 1, "scan_qr", "high", shard="0"),
        created("t2", 1, shard="1"),
        created("t3", 2, "bind_phone", shard="1"),
        created("t4", 3, shard="0"),
        status("t1", 5, shard="0"),
        control(6, "staff_status", "r2", staff_name="售后小李", staff_status="online", shard="1"),
        created("t5", 7, "private_operation", "urgent", shard="0"),
        status("t2", 9, "cancelled", shard="1"),
        control(10, "assign_task", "r3", task_id="t4", staff_name="售后小王", shard="1"),
    ]


def _arrivals(order: random.Random) -> list:
    """The story as two shards might deliver it: each shard's items in order, a tick after some of them
    (never earlier than what the shard sent), the two shards interleaved at random."""
    streams: dict[str, list] = {s: [] for s in SHARDS}
    for shard, value in _story():
        streams[shard].append((shard, value))
        if order.random() < 0.5:
            when = value.event_time if isinstance(value, MonitorEvent) else value.at
            streams[shard].append((shard, Tick(when)))
    for shard in SHARDS:
        streams[shard].append((shard, Tick(at(60))))
    merged = []
    while any(streams.values()):
        shard = order.choice([s for s in SHARDS if streams[s]])
        merged.append(streams[shard].pop(0))
    return merged


def _decisions(out) -> list[bytes]:
    return [o.to_json() for o in out]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_the_same_decisions_whatever_order_the_shards_deliver_in(seed: int):
    reference = _decisions(run(desk(), _arrivals(random.Random(0))))
    assert _decisions(run(desk(), _arrivals(random.Random(seed)))) == reference


def test_the_story_reference():
    out = run(desk(), _arrivals(random.Random(0)))
    # 小李 offline: 小王 (max 2) takes t1 and t2; t3 waits; t1 done at 5 -> t3 to 小王; 小李 online at 6
    # takes t4 (waiting since 3); t5 urgent -> 小李 (fewer open); t4 moved to 小王 by hand at 10
    assert assigned(out) == [
        ("t1", "售后小王"), ("t2", "售后小王"), ("t3", "售后小王"), ("t4", "售后小李"), ("t5", "售后小李"),
        ("t4", "售后小王"),
    ]  # fmt: skip


def test_a_restored_desk_decides_as_the_one_that_kept_running():
    items = _arrivals(random.Random(7))
    whole = _decisions(run(desk(), items))
    for cut in range(0, len(items), 3):
        first = desk()
        head = run(first, items[:cut])
        snapshot = pickle.loads(pickle.dumps(first.snapshot()))
        cfg = config()
        second = DeskStep.restore(DeskPolicy(cfg, AlertRules(cfg.alerts, "wt_notify"), shards=2), snapshot)
        assert _decisions(head) + _decisions(run(second, items[cut:])) == whole


def test_controls_need_what_their_action_needs():
    with pytest.raises(ValueError, match="staff_status needs staff_status"):
        ControlRecord(action="staff_status", at=T0, actor="主管", request_id="x", staff_name="甲")
    with pytest.raises(ValueError, match="assign_task needs task_id"):
        ControlRecord(action="assign_task", at=T0, actor="主管", request_id="x", staff_name="甲")


def test_desk_members_must_be_staff():
    with pytest.raises(ValueError, match="not staff"):
        BusinessConfig.model_validate({"after_sales": {"desk": [{"name": "陌生人"}]}})
    ok = BusinessConfig.model_validate(
        {"staff_patterns": ["^售后"], "after_sales": {"desk": [{"name": "售后某人"}]}}
    )
    assert ok.after_sales.desk[0].max_open_tasks == 10


def test_one_far_watermark_decides_as_many_small_ones():
    """The parent of a sliced replay runs the desk over everything at once, with the last watermark."""
    cfg = config(
        desk=[
            {"name": "甲", "on_duty": ["09:00-18:00"], "max_open_tasks": 1},
            {"name": "乙", "on_duty": ["10:00-22:00"]},
        ]
    )
    night = 14 * 60 + 30
    story = [created("t1", 1), created("t2", night), created("t3", night + 60), status("t1", night + 600)]
    small = desk(cfg)
    stepwise = []
    for item in story:
        stepwise += run(small, [item, *ticks(item[1].event_time.timestamp() / 60 - T0.timestamp() / 60)])
    stepwise += run(small, ticks(3000))
    big = desk(cfg)
    at_once = run(big, [*story, *ticks(3000)])
    assert _decisions(at_once) == _decisions(stepwise)
    assert ("t2", "甲") in assigned(at_once) or ("t2", "乙") in assigned(at_once)


def test_without_a_desk_nothing_is_assigned_and_nobody_is_alerted():
    step = desk(config(desk=[]))
    out = run(step, [created("t1", 1), *ticks(5)])
    assert out == []
    out = run(step, [control(6, "assign_task", "r1", task_id="t1", staff_name="售后老张"), *ticks(7)])
    assert assigned(out) == [("t1", "售后老张")]


def _alert(name: str, minute: float, alert_id: str, alert_type: str, level: int, session: str, user: str):
    from operators.alerts import Alert

    alert = Alert(alert_id=alert_id, alert_type=alert_type, alert_key=f"{alert_type}|{session}|{user}",
                  subject=session, level=level, raised_at=at(minute), last_triggered_at=at(minute),
                  session_id=session, user_name=user)  # fmt: skip
    if name == "alert_raised":
        data = AlertRaised.make(alert_id=alert_id, alert_type=alert_type, level=level, alert=alert.model())
    else:
        data = AlertEscalated.make(
            alert_id=alert_id, from_level=level, to_level=level + 1, alert=alert.model()
        )
    return "1", data.at(at(minute), session)


def test_the_day_ends_with_its_report():
    """T0 is 10:00 local; the day ends at 24:00 local, 14 hours later."""
    step = desk()
    response = UserResponse.make(task_id="t2", status="refused").at(at(50), "group:t2")
    again = TaskUpdated.make(task_id="t1", message_id="m9", description="还是不行").at(at(20), "group:t1")
    out = run(step, [
        created("t1", 0, "scan_qr", "high"),  # -> 小王 (skill), done after 90 min: beyond scan_qr's 60
        created("t2", 10),  # -> 小李
        ("0", again),
        created("t3", 30, "bind_phone"),  # -> 小李? both have 1 open: skill account -> 小李
        ("1", response),
        status("t1", 90),
        status("t2", 40),  # done in 30 min, within other's 240
        status("t3", 100, "cancelled"),
        created("t4", 600),  # still open at midnight, not overdue (opened 20:00, target 240 min -> 00:00)
        _alert("alert_raised", 60, "a1", "task_not_followed_up", 2, "group:t3", "用户t3"),
        _alert("alert_escalated", 70, "a1", "task_not_followed_up", 2, "group:t3", "用户t3"),
        _alert("alert_raised", 65, "a2", "user_complaint", 4, "group:x", "某人"),
        *ticks(14 * 60 + 1),
    ])  # fmt: skip
    [report] = events(out, "daily_report")
    r = report.data
    assert report.event_time == at(14 * 60) and report.session_id == "desk"
    assert (r.report_date, r.timezone) == ("2026-12-03", "Asia/Shanghai")
    assert (r.tasks_opened, r.tasks_completed, r.tasks_cancelled, r.opened_and_completed) == (4, 2, 1, 2)
    assert r.completion_rate == 0.5
    assert (r.avg_handling_minutes, r.p90_handling_minutes, r.sla_attained) == (60.0, 90.0, 0.5)
    assert (r.open_at_end, r.overdue_at_end) == (1, 0)
    assert r.cooperation == {"responded": 0, "refused": 1, "timeout": 0}
    assert r.funnel == {"needs": 5, "opened": 4, "assigned": 4, "completed": 2}
    staff = {s.name: s for s in r.staff}
    assert (staff["售后小王"].assigned, staff["售后小王"].completed) == (2, 1)
    assert (staff["售后小李"].assigned, staff["售后小李"].completed, staff["售后小李"].not_followed_up) == (
        2,
        1,
        1,
    )
    assert sum(s.open_at_end for s in r.staff) == 1
    assert [(a.alert_type, a.level, a.raised, a.escalated) for a in r.alerts] == [
        ("task_not_followed_up", 2, 1, 1), ("user_complaint", 4, 1, 0),
    ]  # fmt: skip
    assert r.summary.startswith("【售后日报】2026-12-03\n任务：新建 4，完成 2，取消 1；当日完成率 50%")
    assert "用户投诉·紧急 1" in r.summary and "任务未跟进·警告 1（升级 1）" in r.summary
    [notice] = [o for o in out if isinstance(o, CommandRecord) and o.cause.event == "daily_report"]
    assert (notice.channel, notice.target, notice.content) == ("wecom", "售后工作群", r.summary)
    # the next day starts from zero, and its report comes at the next midnight
    out = run(step, [*ticks(38 * 60 + 1)])
    [second] = events(out, "daily_report")
    assert second.data.report_date == "2026-12-04" and second.data.tasks_opened == 0
    assert second.data.open_at_end == 1 and second.data.overdue_at_end == 1


def test_the_report_goes_to_feishu_when_it_is_configured():
    cfg = config()
    step = DeskStep(DeskPolicy(cfg, AlertRules(cfg.alerts, "wt_notify"), shards=2, feishu=True))
    out = run(step, [created("t1", 0), *ticks(14 * 60)])
    channels = sorted(
        o.channel for o in out if isinstance(o, CommandRecord) and o.cause.event == "daily_report"
    )
    assert channels == ["feishu", "wecom"]


def test_percentile_by_nearest_rank():
    from operators.reports import percentile

    assert percentile([], 0.9) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([float(x) for x in range(1, 11)], 0.9) == 9.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_a_day_without_anything_has_no_report():
    step = desk()
    out = run(step, [created("t1", 0), status("t1", 5), *ticks(14 * 60 + 1)])
    assert [e.data.report_date for e in events(out, "daily_report")] == ["2026-12-03"]
    assert events(run(step, ticks(3 * 24 * 60)), "daily_report") == []  # three quiet days, nothing open


def test_the_flow_hands_the_desk_one_item_per_tick_and_keeps_each_shards_order():
    from dataflows.flow import _to_desk

    tick, later = Tick(at(1)), Tick(at(2))
    event = created("t1", 1)[1]
    batch = [("0", tick), ("1", tick), ("1", event), ("0", later), ("1", later), ("2", "not the desk's")]
    out = [v for _, v in _to_desk(batch)]
    assert out == [(("0", "1"), tick), ("1", event), (("0", "1"), later)]
    step = desk()
    decided = run(step, [v for _, v in _to_desk([("0", event), ("0", Tick(at(5))), ("1", Tick(at(5)))])])
    assert assigned(decided) == [("t1", "售后小王")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 30),
            st.sampled_from(["urgent", "high", "normal", "low"]),
            st.integers(0, 5),
        ),
        max_size=60,
    )
)
def test_the_waiting_queue_serves_urgent_then_oldest_as_a_sorted_list_would(ops):
    queue, naive, tasks = WaitingQueue(), [], {}
    for add, n, priority, minute in ops:
        tid = f"t{n:02d}"
        if add and tid not in tasks:
            tasks[tid] = DeskTask(tid, "account", priority, T0 + timedelta(minutes=minute))
            queue.add(tasks[tid])
            naive.append(tid)
        elif not add:
            assert queue.discard(tid) == (tid in naive)
            if tid in naive:
                naive.remove(tid)
                del tasks[tid]
    rank = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
    expected = sorted(naive, key=lambda t: (rank[tasks[t].priority], tasks[t].opened_at, t))
    assert queue.ids() == expected and len(queue) == len(expected)
    assert all(t in queue for t in expected) and "nobody" not in queue
    assert WaitingQueue(tasks[t] for t in reversed(expected)).ids() == expected  # as a restore rebuilds it
