"""Per-message sentiment and the rolling per-user satisfaction (operators/sentiment.py)."""

import pickle
from datetime import UTC, datetime, timedelta

import pytest

from operators.sentiment import SatisfactionState, SatisfactionTracker, SentimentScorer
from worktool.config import ClassifierConfig

CONFIG = ClassifierConfig()
SCORER = SentimentScorer(CONFIG)
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "sign"),
    [
        ("谢谢老师，太好了", 1),
        ("非常满意", 1),
        ("好的", 1),
        ("不用担心", 1),
        ("我很不满意，要求退款", -1),
        ("骗子", -1),
        ("太失望了", -1),
        ("现在不行", -1),
        ("唉", -1),
        ("佣金什么时候结算", 0),
        ("", 0),
        ("麻烦您扫一下码", 0),  # 麻烦您 is politeness, not annoyance
    ],
)
def test_sentiment_sign(text, sign):
    s = SCORER.score(text)
    assert -1.0 < s < 1.0
    assert (s > 0) - (s < 0) == sign, s


def test_negation_flips_and_intensifiers_strengthen():
    assert SCORER.score("满意") > 0 > SCORER.score("不满意")
    assert SCORER.score("太失望了") < SCORER.score("失望")
    assert SCORER.score("骗子！！！") < SCORER.score("骗子")
    assert SCORER.score("哈哈哈哈哈哈") == SCORER.score("哈哈")  # a repeated word counts once


def test_classifier_scan_gives_the_same_sentiment():
    from classifiers.labelled import labelled_message
    from operators.classify import RuleClassifier
    from worktool.config import BusinessConfig

    rules = RuleClassifier(BusinessConfig(operators=["王老板"]))
    for text, sender in [
        ("我很不满意，要求退款", "张姐"),
        ("你是猪吗，这点事都做不好", "王老板"),
        ("谢谢老师", "张姐"),
    ]:
        c = rules.classify(labelled_message({"text": text, "sender_name": sender}))
        assert c.sentiment == SCORER.score(text)


# --- satisfaction ---------------------------------------------------------------------------------


@pytest.fixture
def tracker() -> SatisfactionTracker:
    return SatisfactionTracker(CONFIG.satisfaction)


def test_new_users_start_neutral(tracker):
    state = SatisfactionState()
    assert tracker.score(state, "张姐") == 0.5
    assert tracker.observe(state, "张姐", 0.0, T0) == 0.5


def test_repeated_negative_messages_fall_below_low(tracker):
    state = SatisfactionState()
    scores = [
        tracker.observe(state, "张姐", SCORER.score("太失望了"), T0 + timedelta(minutes=i)) for i in range(3)
    ]
    assert scores[0] < 0.5 and scores == sorted(scores, reverse=True)
    assert tracker.is_low(scores[-1])


def test_a_complaint_alone_is_low(tracker):
    state = SatisfactionState()
    assert tracker.is_low(tracker.observe(state, "张姐", 0.0, T0, complaint=True))


def test_recovery_takes_several_positive_messages(tracker):
    state = SatisfactionState()
    tracker.observe(state, "张姐", 0.0, T0, complaint=True)
    scores = [
        tracker.observe(state, "张姐", SCORER.score("谢谢老师，太好了"), T0 + timedelta(minutes=i + 1))
        for i in range(8)
    ]
    assert not tracker.is_high(scores[1])
    assert tracker.is_high(scores[-1]) and scores[-1] <= 1.0


def test_neutral_messages_drift_back_to_neutral(tracker):
    state = SatisfactionState()
    low = tracker.observe(state, "张姐", 0.0, T0, complaint=True)
    later = low
    for i in range(20):
        later = tracker.observe(state, "张姐", 0.0, T0 + timedelta(minutes=i + 1))
    assert low < later < 0.5


def test_users_are_independent_and_scores_bounded(tracker):
    state = SatisfactionState()
    for i in range(50):
        tracker.observe(state, "a", -0.99, T0 + timedelta(seconds=i), complaint=True)
        tracker.observe(state, "b", 0.99, T0 + timedelta(seconds=i))
    assert 0.0 <= tracker.score(state, "a") < 0.05
    assert 0.95 < tracker.score(state, "b") <= 1.0


def test_idle_users_are_evicted_by_event_time(tracker):
    state = SatisfactionState()
    tracker.observe(state, "old", -0.5, T0)
    tracker.observe(state, "recent", -0.5, T0 + timedelta(days=29))
    # 31 days after "old" was last seen, the next message sweeps it out (the sweep runs hourly at most)
    tracker.observe(state, "new", 0.0, T0 + timedelta(days=31))
    assert set(state.users) == {"recent", "new"}
    assert tracker.score(state, "old") == 0.5  # forgotten: back to the start value
    assert tracker.evict_idle(state, T0 + timedelta(days=100)) == 2


def test_out_of_order_events_keep_the_latest_time(tracker):
    state = SatisfactionState()
    tracker.observe(state, "张姐", 0.5, T0 + timedelta(hours=2))
    tracker.observe(state, "张姐", 0.5, T0)
    assert state.users["张姐"].last_at == T0 + timedelta(hours=2)
    assert state.users["张姐"].messages == 2


def test_state_is_picklable(tracker):
    state = SatisfactionState()
    tracker.observe(state, "张姐", -0.6, T0)
    clone = pickle.loads(pickle.dumps(state))
    assert clone == state
    assert tracker.observe(clone, "张姐", -0.6, T0 + timedelta(minutes=1)) < tracker.score(state, "张姐")
