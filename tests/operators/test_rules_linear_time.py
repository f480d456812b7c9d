"""No text can stall the rule classifier: every pattern runs in linear time (RE2, worktool/linear_regex.py).

Fuzzed with adversarial texts built from the classifier's own word lists (repeated acknowledgements,
negators, keywords), long CJK runs and punctuation, each with a generous time bound that grows with
the length (the work is linear: about 6 µs a character at the largest body the gateway accepts).
Before RE2, "在的" x 20 + "z" took 0.8 s and every two more characters tripled it (x 40: hours).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from classifiers.labelled import labelled_message
from operators.classify import RuleClassifier
from tests.support import chaos_scale
from worktool.config import BusinessConfig, ConfigError, load_config
from worktool.linear_regex import LinearRegex, PatternError
from worktool.rule_defaults import DEFAULT_CLASSIFIER
from worktool.settings import default_limits

CONFIG = BusinessConfig(staff_patterns=[r"^售后\w*"], operator_patterns=[r"运营(?:-\w+)+"])
CLASSIFIER = RuleClassifier(CONFIG)
# The largest text a body can carry: UTF-8 CJK takes three bytes a character.
MAX_CHARS = default_limits().max_body_bytes // 3


def bound_s(text: str) -> float:
    """Generous: 0.5 s plus 20 µs a character (about 3 times the measured cost on a loaded box)."""
    return 0.5 + 20e-6 * len(text)


def classify_time(text: str, sender: str = "用户甲") -> float:
    m = labelled_message({"text": text, "sender_name": sender})
    start = time.perf_counter()
    CLASSIFIER.classify(m)
    return time.perf_counter() - start


def _words() -> list[str]:
    c = DEFAULT_CLASSIFIER
    r = c["responses"]
    words = [*r["responded"], *r["acknowledgements"], *r["fillers"], *r["refused"], *c["negators"]]
    for rules in c["user"].values():
        words.extend(rules.get("keywords", {}))
    return sorted({w for w in words if w})


WORDS = _words()
PUNCTUATION = list(",.。!?;、~…！？ \n[]@") + ["😀", "\u200b"]
CJK = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=8)
FRAGMENT = st.one_of(st.sampled_from(WORDS), st.sampled_from(PUNCTUATION), CJK, st.text(max_size=4))
# A text: a few fragments, each repeated many times (the shape that makes nested quantifiers explode).
TEXT = st.lists(
    st.tuples(st.lists(FRAGMENT, min_size=1, max_size=3), st.integers(1, 400)), min_size=1, max_size=4
).map(lambda parts: "".join("".join(frags) * n for frags, n in parts)[: 4000 * chaos_scale()])


@pytest.mark.chaos
@hypothesis_settings(max_examples=60 * chaos_scale(), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=TEXT,
    tail=st.sampled_from(["", "z", "?", "吗", "!!!"]),
    sender=st.sampled_from(["用户甲", "售后小王", "运营-a"]),
)
def test_adversarial_texts_classify_in_linear_time(text: str, tail: str, sender: str) -> None:
    text += tail
    took = classify_time(text, sender)
    assert took < bound_s(text), f"{len(text)} characters took {took:.2f} s: {text[:80]!r}"


@pytest.mark.chaos
@pytest.mark.parametrize("repeats", [20, 26, 40])
def test_repeated_acknowledgement_then_a_letter(repeats: int) -> None:
    """The message of issue 13: "在的" x 40 + "z" (81 characters) stalled the dataflow for good."""
    text = "在的" * repeats + "z"
    took = classify_time(text)
    assert took < 0.5, f"{repeats} repeats took {took:.2f} s"


@pytest.mark.chaos
@pytest.mark.parametrize(
    "unit", ["在的", "投诉，", "好的~", "我打", "是的呀"][: 2 if chaos_scale() == 1 else None]
)
def test_the_largest_body_classifies_in_linear_time(unit: str) -> None:
    text = (unit * (MAX_CHARS // len(unit) + 1))[:MAX_CHARS] + "z"
    took = classify_time(text)
    assert took < bound_s(text), f"{len(text)} characters took {took:.2f} s"


# ---------------------------------------------------------------------------------------------
# Patterns an automaton cannot run are refused when the configuration loads, naming the key.


@pytest.mark.parametrize(
    ("yaml", "key"),
    [
        ("staff_patterns: ['(?<!客)服']", "staff_patterns.0"),
        (
            "classifier: {user: {chat_complaint: {patterns: {'(a)\\1': 1.0}}}}",
            "classifier.user.chat_complaint.patterns",
        ),
        ("classifier: {question_patterns: ['吗(?=\\?)']}", "classifier.question_patterns.0"),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_with_its_key(tmp_path, yaml: str, key: str) -> None:
    path = tmp_path / "business.yaml"
    path.write_text(yaml, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"{key}:" in str(e.value)
    assert "linear-time" in str(e.value)


def test_python_meaning_of_unicode_classes_is_kept() -> None:
    # \W is not a CJK character (RE2's own \W is ASCII-only); $ also before a final newline
    assert not LinearRegex(r"^\W*发错了\W*$").fullmatch("我发错了")
    assert LinearRegex(r"^\W*发错了\W*$").fullmatch("~发错了!")
    assert LinearRegex(r"^早$").search("早\n")
    assert LinearRegex(r"\d+天").search("等了３天".replace("３", "3"))
    assert LinearRegex(r"[\w]+").search("售后") == (0, 2)
    # a group named `hit` is the span reported (a look-behind written as a consumed prefix)
    assert LinearRegex(r"(?:^|[^多])(?P<hit>少给)").search("不少给了") == (1, 3)
    with pytest.raises(PatternError):
        LinearRegex(r"(?<!多)少")
