"""Customer profiles (operators/profiles.py) through the sessions step, with explicit event times: what
each event adds to an owner's profile, the throttle of customer_updated in event time, the health score
and its band, and a snapshot taken mid-story that goes on with the same events."""

from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.profiles import Profile, ProfileRules, _keep_latest, cooperation_level, trend
from operators.sessions import SessionPolicy, SessionStep
from operators.timers import Tick
from tests.operators.test_session_rules import CONFIG, SID, at, events, message, staff


@pytest.fixture
def step() -> SessionStep:
    return SessionStep(SessionPolicy(CONFIG))


def profiles(out: list[Any], name: str = "用户甲") -> list[Any]:
    return [e.data for e in events(out, "customer_updated") if e.data.user_name == name]


def test_a_need_is_a_profile_at_once_with_its_task_and_the_owner_waiting(step) -> None:
    out = step.on_item(message("怎么扫码认证", 0, message_type="chat_after_sales"))
    [p] = profiles(out)
    assert events(out)[-1].event == "customer_updated"  # after what the message did
    assert (p.message_count, p.messages, p.group_name) == (1, {"chat_after_sales": 1}, "A群")
    assert p.requirements == {"needs": 1, "opened": 1, "completed": 0, "cancelled": 0}
    [task] = p.open_tasks
    assert (task.task_type, task.opened_at) == ("scan_qr", at(0))
    assert (p.waiting_since, p.first_seen_at, p.last_message_at) == (at(0), at(0), at(0))
    assert (p.cooperation_level, p.responses, p.avg_response_minutes) == ("unknown", 0, None)
    assert (p.health_score, p.health_band) == (83, "healthy")  # satisfaction 0.5, nothing against them


def test_changes_within_the_interval_come_once_when_it_ends_with_the_latest_state(step) -> None:
    assert len(profiles(step.on_item(message("在吗", 0)))) == 1
    quiet = [step.on_item(message(f"第{i}条", i)) for i in (2, 4, 6)]
    assert [profiles(out) for out in quiet] == [[], [], []]
    answered = step.on_item(staff("在的，您说", 7))
    assert profiles(answered) == []  # also a change (a response time), still inside the interval
    assert profiles(step.on_item(Tick(at(9.99)))) == []
    [due] = events(step.on_item(Tick(at(10))), "customer_updated")
    assert due.event_time == at(10) and due.session_id == SID
    assert (due.data.message_count, due.data.responses, due.data.avg_response_minutes) == (4, 1, 7.0)
    assert due.data.waiting_since is None and due.data.last_message_at == at(6)
    assert profiles(step.on_item(Tick(at(60)))) == []  # nothing changed since: nothing due
    assert profiles(step.on_item(message("还有个问题", 61))) == []  # a message alone moves only counts
    [later] = profiles(step.on_item(message("扫码认证怎么弄", 62, message_type="chat_after_sales")))
    assert later.message_count == 6 and later.waiting_since == at(61)  # a need, > 10 min on: at once


def test_a_staff_answer_gives_every_waiting_owner_a_response_time(step) -> None:
    step.on_item(message("请问", 0))
    step.on_item(message("我也想问", 3, sender="用户乙"))
    out = step.on_item(staff("两位稍等，我来看看", 12))
    [mine] = profiles(out, "用户甲")  # its last one is 12 minutes old: at once
    assert (mine.avg_response_minutes, mine.waiting_since, profiles(out, "用户乙")) == (12.0, None, [])
    [theirs] = profiles(step.on_item(Tick(at(13))), "用户乙")  # 10 minutes after their first
    assert (theirs.avg_response_minutes, theirs.responses) == (9.0, 1)


def test_tasks_cooperation_and_completion_fill_the_funnel(step) -> None:
    step.on_item(message("需要扫码认证吗", 0, message_type="chat_after_sales"))
    step.on_item(message("扫码还是不行", 1, message_type="chat_after_sales"))  # the same need again
    step.on_item(staff("@用户甲 请扫一下码", 20, message_type="staff_at_user", mentions=("用户甲",)))
    step.on_item(message("好的我扫了", 25))
    out = step.on_item(message("已经解决了，谢谢", 40))
    *_, p = profiles(out)  # the one due at 30 (the answer at 25), then this message's
    assert p.requirements == {"needs": 2, "opened": 1, "completed": 1, "cancelled": 0}
    assert p.open_tasks == [] and p.cooperation == {"responded": 1, "refused": 0, "timeout": 0}
    assert p.cooperation_level == "cooperative"
    assert p.messages == {"chat_after_sales": 2, "chat_daily": 2}


def test_an_owner_who_does_not_answer_a_staff_at_is_a_timeout(step) -> None:
    step.on_item(message("需要扫码认证吗", 0, message_type="chat_after_sales"))
    step.on_item(staff("@用户甲 请扫一下码", 1, message_type="staff_at_user", mentions=("用户甲",)))
    out = step.on_item(Tick(at(61)))  # user_not_cooperating: a timeout and an open alert
    *_, p = profiles(out)
    assert p.cooperation == {"responded": 0, "refused": 0, "timeout": 1}
    assert p.cooperation_level == "uncooperative" and p.alerts == {"user_not_cooperating": 1}
    assert p.open_alerts == 1 and p.health_score < 82


@pytest.mark.parametrize("fired_by", ["tick", "record"])
def test_a_timer_is_folded_once_whether_a_tick_or_its_conversations_record_fires_it(step, fired_by) -> None:
    """Replays and live runs place ticks differently: a due timer fired by the conversation's next
    record must count in the profile exactly as one fired by a tick (not once more with the record)."""
    step.on_item(message("需要扫码认证吗", 0, message_type="chat_after_sales"))
    step.on_item(staff("@用户甲 请扫一下码", 1, message_type="staff_at_user", mentions=("用户甲",)))
    out = step.on_item(Tick(at(61))) if fired_by == "tick" else []
    out += step.on_item(message("有人在吗", 61.5, sender="用户乙"))
    out += step.on_item(Tick(at(200)))
    *_, p = profiles(out)
    assert p.cooperation == {"responded": 0, "refused": 0, "timeout": 1}
    assert p.alerts == {"user_not_cooperating": 1} and p.open_alerts == 1


def test_a_complaint_opens_an_alert_that_staff_stepping_in_cancels(step) -> None:
    [p] = profiles(step.on_item(message("我要投诉你们", 0, message_type="chat_complaint", sentiment=-0.9)))
    assert (p.alerts, p.open_alerts) == ({"user_complaint": 1}, 1)
    assert p.health_band == "watch" and p.satisfaction is not None and p.satisfaction < 0.3
    step.on_item(staff("非常抱歉，马上为您处理", 2))
    [after] = profiles(step.on_item(Tick(at(10))))
    assert (after.alerts, after.open_alerts, after.responses) == ({"user_complaint": 1}, 0, 1)
    assert after.health_score > p.health_score


def test_the_satisfaction_trend_follows_the_latest_scores(step) -> None:
    trends = [
        profiles(step.on_item(message("太差了，很不满意", i * 11, sentiment=-0.9)))[-1] for i in range(3)
    ]
    assert [p.satisfaction_trend for p in trends] == [None, "down", "down"]
    ups = [
        profiles(step.on_item(message("太好了，非常满意", 40 + i * 11, sentiment=0.9)))[-1] for i in range(6)
    ]
    assert ups[-1].satisfaction_trend == "up" and ups[-1].satisfaction > trends[-1].satisfaction


def test_staff_and_operators_have_no_profile(step) -> None:
    out = step.on_item(staff("大家好", 0)) + step.on_item(
        message("通知", 1, sender="运营-老周", sender_type="operator")
    )
    assert events(out, "customer_updated") == [] and not step.sessions[SID].profiles.owners


@pytest.mark.parametrize(
    ("fields", "score", "band"),
    [
        ({}, 83, "healthy"),  # 82.5 half up: 100 * (0.35*0.5 + 0.2 + 0.2 + 0.15 + 0.1)
        ({"satisfaction": 1.0}, 100, "healthy"),
        ({"satisfaction": 0.0, "open_alerts": {"a1": 4}}, 45, "watch"),  # 0 + 20 + 0 + 15 + 10
        ({"satisfaction": 0.2, "refused": 2, "open_alerts": {"a1": 2}}, 49, "watch"),  # 7+6.67+10+15+10
        ({"satisfaction": 0.1, "timeouts": 3, "open_alerts": {"a": 4}, "cancelled": 1, "responses": [90.0]},
         16, "at_risk"),  # 3.5 + 5 + 0 + 7.5 + 0
        ({"responses": [30.0, 30.0]}, 78, "healthy"),  # r = 1 - 30/60: 77.5, half up
    ],
)  # fmt: skip
def test_the_health_score_formula(fields: dict[str, Any], score: int, band: str) -> None:
    rules = ProfileRules(CONFIG, 0.5)
    p = Profile(first_at=at(0), last_at=at(0), **fields)
    assert rules.health(p, at(1)) == (score, band)


def test_an_open_task_past_its_target_counts_against_the_health() -> None:
    rules = ProfileRules(CONFIG, 0.5)
    p = Profile(first_at=at(0), last_at=at(0), tasks={"t1": ("scan_qr", at(0))})  # target 60 min
    assert rules.health(p, at(60)) == (83, "healthy")
    assert rules.health(p, at(61)) == (75, "healthy")  # t = 1 / 2


def _standing_as_written(rules: ProfileRules, p: Profile, at_: Any) -> tuple[Any, ...]:
    """The standing (health included) as first written, before its lookups were trimmed (issue 14)."""
    s = rules.initial if p.satisfaction is None else p.satisfaction
    c = (p.responded + 1) / (p.responded + p.refused + p.timeouts + 1)
    a = min(1.0, sum(p.open_alerts.values()) / 4)
    overdue = sum((at_ - o).total_seconds() / 60 > rules.targets.get(tt, 240) for tt, o in p.tasks.values())
    t = (p.completed + 1) / (p.completed + p.cancelled + overdue + 1)
    r = max(0.0, 1 - sum(p.responses) / len(p.responses) / rules.response_target) if p.responses else 1.0
    score = int(100 * (0.35 * s + 0.2 * c + 0.2 * (1 - a) + 0.15 * t + 0.1 * r) + 0.5)
    band = "healthy" if score >= 70 else "watch" if score >= 40 else "at_risk"
    return (score, band, p.needs, p.opened, p.completed, p.cancelled, tuple(p.tasks),
            tuple(sorted(p.open_alerts.items())), p.responded, p.refused, p.timeouts, trend(p.scores))  # fmt: skip


_counts = st.integers(0, 6)


@given(
    satisfaction=st.none() | st.floats(0, 1),
    scores=st.lists(st.floats(0, 1), max_size=5),
    responses=st.lists(st.floats(0, 300), max_size=20),
    counts=st.tuples(_counts, _counts, _counts, _counts, _counts, _counts, _counts),
    tasks=st.dictionaries(
        st.sampled_from(["t1", "t2", "t3"]),
        st.tuples(st.sampled_from(["scan_qr", "other", "unknown_type"]), st.floats(0, 600)),
        max_size=3,
    ),
    open_alerts=st.dictionaries(st.sampled_from(["a3", "a1", "a2"]), st.integers(1, 4), max_size=3),
    now=st.floats(0, 900),
)
def test_the_standing_is_the_one_first_written(  # noqa: PLR0913
    satisfaction, scores, responses, counts, tasks, open_alerts, now
) -> None:
    rules = ProfileRules(CONFIG, 0.5)
    needs, opened, completed, cancelled, responded, refused, timeouts = counts
    p = Profile(
        first_at=at(0), last_at=at(0), satisfaction=satisfaction, scores=scores, responses=responses,
        needs=needs, opened=opened, completed=completed, cancelled=cancelled, responded=responded,
        refused=refused, timeouts=timeouts, open_alerts=open_alerts,
        tasks={t: (tt, at(minutes)) for t, (tt, minutes) in tasks.items()},
    )  # fmt: skip
    assert rules.standing(p, at(now)) == _standing_as_written(rules, p, at(now))


@given(values=st.lists(st.floats(allow_nan=False), max_size=30), value=st.floats(allow_nan=False),
       kept=st.integers(2, 25))  # fmt: skip
def test_keeping_the_latest_values_in_place_is_the_slice_it_replaced(values, value, kept) -> None:
    expected = [*values[-(kept - 1) :], value]
    _keep_latest(values, value, kept)
    assert values == expected


def test_trend_and_cooperation_levels() -> None:
    assert (trend([]), trend([0.5]), trend([0.5, 0.56]), trend([0.5, 0.45]), trend([0.5, 0.44])) == (
        None, None, "up", "flat", "down",
    )  # fmt: skip
    assert [cooperation_level(*c) for c in [(0, 0, 0), (7, 3, 0), (2, 1, 1), (1, 1, 1)]] == [
        "unknown", "cooperative", "partial", "uncooperative",
    ]  # fmt: skip


def test_a_snapshot_mid_story_goes_on_with_the_same_events() -> None:
    story = [
        message("怎么扫码认证", 0, message_type="chat_after_sales"),
        message("我要投诉你们", 2, message_type="chat_complaint", sentiment=-0.9),
        staff("@用户甲 请扫一下码", 4, message_type="staff_at_user", mentions=("用户甲",)),
        Tick(at(9)),
        message("好的", 11),
        Tick(at(30)),
        message("解决了", 50),
        Tick(at(200)),
    ]
    whole = SessionStep(SessionPolicy(CONFIG))
    expected = [whole.on_item(item) for item in story]
    for cut in range(1, len(story)):
        first = SessionStep(SessionPolicy(CONFIG))
        for item in story[:cut]:
            first.on_item(item)
        resumed = SessionStep.restore(SessionPolicy(CONFIG), pickle.loads(pickle.dumps(first.snapshot())))
        assert [resumed.on_item(item) for item in story[cut:]] == expected[cut:], cut
    assert sum(len(profiles(out)) for out in expected) >= 4


def test_the_throttle_interval_comes_from_the_configuration() -> None:
    config = CONFIG.model_copy(deep=True)
    config.after_sales.profiles.update_minutes = 1
    step = SessionStep(SessionPolicy(config))
    step.on_item(message("在吗", 0))
    [p] = profiles(step.on_item(message("有人吗", 1)))
    assert p.message_count == 2
    assert timedelta(minutes=config.after_sales.profiles.update_minutes) == timedelta(minutes=1)
