"""Business configuration: defaults, merging of the classifier section, errors that name the bad key."""

import pickle
from pathlib import Path

import pytest

from worktool.config import BusinessConfig, ClassifierConfig, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "business.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_no_file_and_empty_file_give_the_rules_defaults(tmp_path):
    for config in (load_config(None), load_config(write(tmp_path, ""))):
        c = config.classifier
        assert c.user.chat_complaint.keywords["投诉"] == 3.0
        assert c.responses.responded == [
            "在",
            "在的",
            "来了",
            "好的",
            "收到",
            "可以",
            "行",
            "是的",
        ]  # RULES §7
        assert c.responses.refused == ["没时间", "不想", "不弄了", "不配合"]
        assert c.staff_commands["[暂停回复]"] == "pause_replies"
        assert c.satisfaction.initial == 0.5 and c.satisfaction.low == 0.3 and c.satisfaction.high == 0.7
        assert "马上" in c.operator.tone_hard.keywords and c.operator.exclamation_limit == 2
        assert config.robots == [] and config.timezone == "Asia/Shanghai"


def test_roster_with_patterns(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
robots:
  - {robot_id: wt1, name: 运营助理小A, role: reply_day}
staff: [售后小王]
staff_patterns: ["^售后[-_]"]
operators: [王老板]
operator_patterns: ["^运营[-_]"]
assistants: [群助理小美]
""",
        )
    )
    assert config.robot_names == frozenset({"运营助理小A"})
    patterns = config.compiled_name_patterns
    assert [p.pattern for p in patterns["staff"]] == ["^售后[-_]"]
    assert patterns is config.compiled_name_patterns  # compiled once, cached on the model


def test_classifier_section_merges_over_the_defaults(tmp_path):
    config = load_config(
        write(
            tmp_path,
            """
classifier:
  threshold: 1.5
  user:
    chat_complaint:
      keywords: {差评: 3.5, 投诉: 0, 退群: 2.5}
  negators: [不, 没]
""",
        )
    )
    c = config.classifier
    complaint = c.user.chat_complaint
    assert c.threshold == 1.5
    assert complaint.keywords["差评"] == 3.5 and complaint.keywords["退群"] == 2.5
    assert complaint.keywords["投诉"] == 0  # switched off
    assert complaint.keywords["举报"] == 3.0  # untouched defaults stay
    assert complaint.patterns  # a mapping not mentioned keeps all its defaults
    assert c.negators == ["不", "没"]  # a list replaces the default
    assert c.user.chat_after_sales.keywords["扫码"] == 2.0


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("stafff: [a]", "stafff"),
        ("robots:\n  - {robot_id: x, name: y, role: boss}", "robots.0.role"),
        ("robots:\n  - {robot_id: x, role: monitor}", "robots.0.name"),
        (
            "classifier:\n  user:\n    chat_complaint:\n      keywordz: {a: 1}",
            "classifier.user.chat_complaint.keywordz",
        ),
        ("classifier:\n  user:\n    chat_foo: {}", "classifier.user.chat_foo"),
        ("classifier:\n  satisfaction:\n    alpha: 2", "classifier.satisfaction.alpha"),
        ("classifier:\n  threshold: high", "classifier.threshold"),
        ("classifier:\n  negators: [不, 没有]", "classifier.negators.1"),
        ("classifier:\n  sentiment:\n    positive: {好: -1}", "classifier.sentiment.positive"),
    ],
)
def test_errors_name_the_bad_key(tmp_path, yaml_text, expected):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, yaml_text))
    assert expected in str(e.value)
    assert "business.yaml" in str(e.value)


def test_bad_regex_is_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, 'staff_patterns: ["^ok", "售后[-_"]'))
    assert "staff_patterns.1" in str(e.value) and "售后[-_" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, 'classifier:\n  user:\n    chat_daily:\n      patterns: {"(早上": 1}'))
    assert "classifier.user.chat_daily.patterns" in str(e.value) and "(早上" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, 'classifier:\n  question_patterns: ["吗", "[?"]'))
    assert "classifier.question_patterns.1" in str(e.value)


def test_unreadable_invalid_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "staff: [a"))
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(write(tmp_path, "- a\n- b"))


def test_config_is_picklable_with_compiled_patterns():
    config = BusinessConfig(staff_patterns=["^售后"])
    assert config.compiled_name_patterns["staff"][0].search("售后小王")
    _ = config.classifier.user.chat_complaint.compiled_patterns
    clone = pickle.loads(pickle.dumps(config))
    assert clone.compiled_name_patterns["staff"][0].search("售后小王")
    assert clone.classifier == config.classifier


def test_classifier_config_alone_has_the_defaults():
    assert ClassifierConfig().question_regex.search("佣金什么时候结算")
