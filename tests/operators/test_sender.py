"""Sender type (docs/rules.md §1): exact names first by precedence, then patterns, internal rooms are staff."""

import pytest

from operators.sender import SenderResolver, normalize_name
from worktool.config import BusinessConfig, RobotConfig


@pytest.fixture
def resolver() -> SenderResolver:
    return SenderResolver(
        BusinessConfig(
            robots=[RobotConfig(robot_id="wt_day", name="运营助理小A", role="reply_day")],
            staff=["售后小王", "双重身份"],
            operators=["王老板", "双重身份", "运营-Linda"],
            assistants=["群助理小美"],
            staff_patterns=["^售后[-_]", "(?i)^cs[-_]"],
            operator_patterns=["^运营[-_]", "^售后-老板"],
            assistant_patterns=["^群助理"],
        )
    )


@pytest.mark.parametrize(
    ("name", "room", "expected"),
    [
        ("运营助理小A", 1, "robot"),
        ("运营助理小A", 3, "robot"),  # our robot in an internal group is still a robot
        ("王老板", 1, "operator"),
        ("售后小王", 1, "staff"),
        ("群助理小美", 1, "assistant"),
        ("用户甲-138****0000", 1, "user"),
        ("用户乙", 2, "user"),
        ("双重身份", 1, "operator"),  # listed twice: operator outranks staff
        ("售后-阿强", 1, "staff"),  # staff pattern
        ("CS_Tom", 1, "staff"),  # case-insensitive pattern
        ("售后-老板娘", 1, "operator"),  # operator patterns are tried before staff patterns
        ("运营_大伟", 1, "operator"),
        ("运营达人小刘", 1, "user"),  # pattern needs the separator
        ("群助理-小天", 1, "assistant"),
        ("陈经理", 3, "staff"),  # unknown name in an internal group
        ("财务-王姐", 4, "staff"),  # unknown internal contact
        ("陈经理", 1, "user"),
    ],
)
def test_sender_types(resolver, name, room, expected):
    assert resolver.sender_type(name, room) == expected


def test_exact_name_beats_every_pattern():
    r = SenderResolver(BusinessConfig(staff=["运营-小张"], operator_patterns=["^运营-"]))
    assert r.resolve("运营-小张") == ("staff", "staff roster name")
    assert r.resolve("运营-小李")[0] == "operator"


@pytest.mark.parametrize("variant", ["售后小王 ", " 售后小王", "售后小王\u200b", "售后小王\u3000"])
def test_display_name_variants_match(resolver, variant):
    assert resolver.sender_type(variant) == "staff"


def test_case_and_width_insensitive(resolver):
    assert resolver.sender_type("运营-linda") == "operator"
    assert resolver.sender_type("运营－ＬＩＮＤＡ") == "operator"  # full-width
    assert normalize_name("ＡＢｃ ") == "abc"


def test_reason_names_the_rule(resolver):
    assert resolver.resolve("售后-阿强")[1] == "staff name pattern ^售后[-_]"
    assert resolver.resolve("陈经理", 3)[1] == "unknown name in an internal room"
    assert resolver.resolve("路人")[1] == "not on the roster"


def test_is_ours(resolver):
    assert resolver.is_ours("售后小王") and resolver.is_ours("运营助理小A")
    assert not resolver.is_ours("张姐-美食号")


def test_empty_roster_everyone_is_a_user_outside_internal_rooms():
    r = SenderResolver(BusinessConfig())
    assert r.sender_type("任何人", 1) == "user" and r.sender_type("任何人", 2) == "user"
    assert r.sender_type("任何人", 3) == "staff"
