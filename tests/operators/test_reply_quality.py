"""The rule fallback of the staff reply-quality score (operators/quality.py, docs/rules.md §3 situation 2):
a table of staff answers written for this test, each with the owner's question it answers, low (< 0.5) or
high (>= 0.5); the score bounded and total on any text, in linear time; which message answers which
owner's question."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operators.quality import MAX_ASKS, ReplyScorer, content_of, note_ask, strip_mentions, take_ask
from worktool.config import InterventionConfig, load_config
from worktool.rule_defaults import QUALITY_CUES

SCORER = ReplyScorer(InterventionConfig())
LOW, HIGH = "low", "high"

# (the owner's question, the staff answer, expected). Written for this test: brush-offs, deflections,
# pushback, bare acknowledgements, @-only and emoji-only answers, and ordinary helpful answers, with and
# without an @ of the owner in front.
TABLE: list[tuple[str, str, str]] = [
    # -- dismissive ---------------------------------------------------------------------------------
    ("我的佣金什么时候到账？", "嗯", LOW),
    ("我的佣金什么时候到账？", "@张三 嗯", LOW),
    ("视频号怎么突然不能直播了", "哦", LOW),
    ("能帮我看一下后台数据吗", "好", LOW),
    ("实名认证失败了怎么办", "@小美 好的", LOW),
    ("能不能帮我改一下简介", "可以", LOW),
    ("二维码过期了怎么办", "收到", LOW),
    ("我的佣金什么时候到账？", "你问别人去", LOW),
    ("我的佣金什么时候到账？", "@张三 你问别人去", LOW),
    ("怎么绑定新的手机号？", "自己查", LOW),
    ("怎么绑定新的手机号？", "@李哥 自己查", LOW),
    ("视频怎么被平台下架了", "不归我管", LOW),
    ("视频怎么被平台下架了", "@王姐 这个不归我管，找客服去", LOW),
    ("为什么我的号没流量了", "@阿强 这是平台的事，跟我们没关系", LOW),
    ("实名认证失败了怎么办", "你不会自己看群公告吗？", LOW),
    ("实名认证失败了怎么办", "@小美 说了多少遍了，看公告", LOW),
    ("实名认证失败了怎么办", "不知道", LOW),
    ("实名认证失败了怎么办", "我也不清楚，你问问运营吧", LOW),
    ("什么时候结算", "等着吧", LOW),
    ("什么时候结算", "@老刘 这都不会问？", LOW),
    ("商品链接挂不上去", "随便你", LOW),
    ("能帮我改一下简介吗", "自己弄", LOW),
    ("能帮我改一下简介吗", "@红姐 没空", LOW),
    ("为什么我的号没流量了", "正常的", LOW),
    ("视频怎么被平台下架了", "@王姐", LOW),
    ("视频怎么被平台下架了", "@王姐 😂😂", LOW),
    ("视频怎么被平台下架了", "@王姐 ？？？", LOW),
    ("账号被限流了多久能恢复", "👍", LOW),
    ("这个月的结算单在哪看", "@晓晓 百度一下就知道了", LOW),
    ("申诉要拍什么视频", "@阿峰 之前不是说过了吗", LOW),
    ("我的橱窗商品怎么没了", "不是我的问题，你找运营吧", LOW),
    ("直播间为什么进不去", "我没办法，等着吧", LOW),
    # -- helpful ------------------------------------------------------------------------------------
    ("我的佣金什么时候到账？", "佣金是7天结算一次，每周二到账", HIGH),
    ("我的佣金什么时候到账？", "@张三 佣金7天一结，这周二已经打款了，您查一下零钱", HIGH),
    ("怎么绑定新的手机号？", "设置里面找到账号与安全，点手机号绑定", HIGH),
    ("怎么绑定新的手机号？", "@李哥 打开设置-账号与安全，点“绑定手机”，输入验证码就好了", HIGH),
    ("视频怎么被平台下架了", "@王姐 稍等，我帮您查一下", HIGH),
    ("视频怎么被平台下架了", "@王姐 这个不归我管，我帮您转给负责的同事，他今天下午联系您", HIGH),
    ("实名认证失败了怎么办", "@小美 认证失败一般是光线太暗，换个亮一点的地方重新拍一下就可以", HIGH),
    ("实名认证失败了怎么办", "@小美 好的，马上处理", HIGH),
    ("什么时候结算", "月底统一结算，到时候群里通知", HIGH),
    ("为什么我的号没流量了", "这个是系统限流，一般两三天就恢复了，放心", HIGH),
    ("为什么我的号没流量了", "@阿强 请您把后台数据截个图发我，我看一下", HIGH),
    ("能帮我改一下简介吗", "可以的，您把新简介发我，我这边十分钟内改好", HIGH),
    ("二维码过期了怎么办", "@晓晓 我重新发一个，5分钟内扫码有效", HIGH),
    ("申诉要拍什么视频", "首先正脸对镜头，然后念一遍身份证号后四位，10秒左右就行", HIGH),
    ("直播间为什么进不去", "@老刘 平台在维护，预计晚上8点恢复，恢复后我在群里通知您", HIGH),
    ("商品链接挂不上去", "需要先开通橱窗权限，我已经帮您提交申请了，审核一般1个工作日", HIGH),
    ("这个月的结算单在哪看", "@晓晓 结算单在后台-收入-结算记录里，每月3号更新", HIGH),
    ("账号被限流了多久能恢复", "不用担心，限流一般3到7天自动恢复，这期间正常发作品就行", HIGH),
    ("我的橱窗商品怎么没了", "@红姐 商品被下架是因为库存为0，补完库存重新上架就可以了", HIGH),
    ("能不能提前结算", "抱歉，结算周期是系统固定的，暂时不能提前，下周二会按时到账", HIGH),
]


def test_the_table_is_large_and_varied() -> None:
    assert len(TABLE) >= 40
    assert sum(1 for _, a, _ in TABLE if a.startswith("@")) >= 16
    for kind in (LOW, HIGH):
        assert sum(1 for *_, want in TABLE if want == kind) >= 18
        assert any(a.startswith("@") for _, a, want in TABLE if want == kind)


@pytest.mark.parametrize(("question", "answer", "expected"), TABLE)
def test_the_rule_score_of_an_answer(question: str, answer: str, expected: str) -> None:
    verdict = SCORER.score(answer, question)
    assert verdict.source == "rules" and verdict.reason
    if expected == LOW:
        assert verdict.score < 0.5, verdict
        assert SCORER.is_low(verdict)
    else:
        assert verdict.score >= 0.5, verdict
        assert not SCORER.is_low(verdict)


def test_the_words_shared_with_the_question_lift_a_reply() -> None:
    on_topic = SCORER.score("手机号换绑在账号安全里", "怎么换绑手机号")
    off_topic = SCORER.score("手机号换绑在账号安全里", "直播间为什么进不去")
    assert on_topic.score > off_topic.score


def test_the_cues_are_configurable() -> None:
    # Switching the redirect shape and the brush-offs off leaves "go ask someone" unpunished.
    config = InterventionConfig(quality_cues={"redirect": []}, dismissive_words=[])
    assert set(config.quality_cues) == set(QUALITY_CUES)  # the other cues keep their defaults
    assert config.quality_cues["redirect"] == [] and config.quality_cues["time"] == QUALITY_CUES["time"]
    answer, question = "你去问一下运营吧", "什么时候结算"
    assert ReplyScorer(config).score(answer, question).score > SCORER.score(answer, question).score


def test_a_pattern_re2_cannot_run_in_a_cue_is_refused_with_its_key(tmp_path) -> None:
    path = tmp_path / "business.yaml"
    path.write_text("intervention: {quality_cues: {pushback: ['你(?=不)']}}", encoding="utf-8")
    from worktool.config import ConfigError

    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "intervention.quality_cues.pushback.0" in str(e.value)


def test_mentions_and_symbols_are_not_content() -> None:
    assert strip_mentions("@王姐\u2005你好 @李哥 在吗") == " 你好  在吗"
    assert content_of(strip_mentions("@王姐 😂？？ OK!")) == "ok"


# -- bounded, total, linear ------------------------------------------------------------------------

ANY_TEXT = st.text(max_size=400)
CUE_WORDS = sorted(
    {"@", "嗯", "你", "自己", "吗", "？", "不归我", "问", "别人", "我帮", "1", " ", "\u2005", "😂"}
)
CUE_TEXT = st.lists(st.sampled_from(CUE_WORDS), max_size=200).map("".join)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(answer=st.one_of(ANY_TEXT, CUE_TEXT), question=st.one_of(ANY_TEXT, CUE_TEXT))
def test_the_score_is_bounded_and_never_raises(answer: str, question: str) -> None:
    verdict = SCORER.score(answer, question)
    assert 0.0 <= verdict.score <= 1.0
    assert SCORER.score(answer).score == SCORER.score(answer, "").score


@pytest.mark.parametrize("unit", ["你不会自己", "@a", "嗯", "问问别人", "我帮您1", "？"])
def test_a_huge_reply_scores_in_linear_time(unit: str) -> None:
    text = unit * (200_000 // len(unit))
    start = time.perf_counter()
    verdict = SCORER.score(text, text[:240])
    took = time.perf_counter() - start
    assert 0.0 <= verdict.score <= 1.0
    assert took < 0.5 + 20e-6 * len(text), f"{len(text)} characters took {took:.2f} s"


# -- which message answers which question ----------------------------------------------------------

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=30)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_an_answer_without_an_at_takes_the_latest_open_question() -> None:
    asks: dict = {}
    note_ask(asks, "甲", "佣金呢", at(0), WINDOW)
    note_ask(asks, "乙", "怎么绑手机", at(1), WINDOW)
    assert take_ask(asks, (), at(2), WINDOW) == ("乙", (at(1), "怎么绑手机"))
    assert take_ask(asks, (), at(3), WINDOW) == ("甲", (at(0), "佣金呢"))
    assert take_ask(asks, (), at(4), WINDOW) is None


def test_an_answer_with_an_at_takes_that_owners_question_or_none() -> None:
    asks: dict = {}
    note_ask(asks, "甲", "佣金呢", at(0), WINDOW)
    note_ask(asks, "乙", "怎么绑手机", at(1), WINDOW)
    assert take_ask(asks, ("丙",), at(2), WINDOW) is None  # addressed to someone else
    assert take_ask(asks, ("甲",), at(2), WINDOW) == ("甲", (at(0), "佣金呢"))
    assert list(asks) == ["乙"]


def test_an_owners_messages_join_and_the_window_runs_from_the_latest() -> None:
    asks: dict = {}
    note_ask(asks, "甲", "在吗", at(0), WINDOW)
    note_ask(asks, "甲", "佣金什么时候到", at(20), WINDOW)
    assert take_ask(asks, (), at(50), WINDOW) == ("甲", (at(20), "在吗\n佣金什么时候到"))
    note_ask(asks, "甲", "还有问题", at(60), WINDOW)
    assert take_ask(asks, (), at(90) + timedelta(seconds=1), WINDOW) is None  # the window has passed
    assert asks == {}


def test_open_questions_are_bounded() -> None:
    asks: dict = {}
    for i in range(MAX_ASKS + 5):
        note_ask(asks, f"用户{i}", "x" * 1000, at(i / 10), WINDOW)
    assert len(asks) == MAX_ASKS and all(len(text) <= 240 for _, text in asks.values())
    assert "用户0" not in asks
