from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from operators.parse import parse_mentions, parse_message
from worktool.models import RawRecord

AT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def record(body: dict, robot: str = "wt_day") -> RawRecord:
    return RawRecord(kind="message", robot_id=robot, received_at=AT, body=body)


GROUP = {
    "spoken": "需要扫码认证吗",
    "rawSpoken": "@运营助理小A 需要扫码认证吗",
    "receivedName": "用户甲",
    "groupName": "视频号运营A群",
    "groupRemark": "A群",
    "roomType": 1,
    "atMe": "true",
    "textType": 1,
}


def test_group_message_session_target_and_mentions():
    fp, m = parse_message(record(GROUP))
    assert m.session_id == "group:视频号运营A群"
    assert m.reply_target == "A群"  # the robot's remark wins
    assert m.at_me is True and m.is_group
    assert m.mentions == ("运营助理小A",)
    assert m.content_kind == "text"


def test_loose_types_are_coerced():
    _, m = parse_message(
        record({**GROUP, "atMe": "false", "roomType": "1", "textType": "1", "groupRemark": ""})
    )
    assert m.at_me is False and m.room_type == 1 and m.reply_target == "视频号运营A群"


def test_private_session_includes_robot_and_targets_sender():
    body = {"spoken": "你好", "receivedName": "用户乙", "groupName": "", "roomType": 2, "textType": 1}
    _, a = parse_message(record(body, "wt_day"))
    _, b = parse_message(record(body, "wt_night"))
    assert a.session_id != b.session_id and a.reply_target == "用户乙" and not a.is_group


def test_same_content_from_two_robots_has_same_fingerprint_and_id_is_deterministic():
    fp1, m1 = parse_message(record(GROUP, "wt_day"))
    fp2, m2 = parse_message(record({**GROUP, "groupRemark": "别名"}, "wt_monitor"))
    assert fp1 == fp2
    assert parse_message(record(GROUP))[1].message_id == m1.message_id


def test_image_with_empty_text_parses():
    _, m = parse_message(
        record({**GROUP, "spoken": "", "rawSpoken": "", "textType": 2, "fileBase64": "iVBOR"})
    )
    assert m.content_kind == "image" and m.text == "" and m.has_file


@pytest.mark.parametrize(
    "bad",
    [
        {k: v for k, v in GROUP.items() if k != "receivedName"},
        {**GROUP, "roomType": 9},
        {**GROUP, "atMe": "maybe"},
        {**GROUP, "groupName": "", "groupRemark": ""},
    ],
)
def test_malformed_bodies_raise(bad):
    with pytest.raises((ValidationError, ValueError)):
        parse_message(record(bad))


def test_parse_mentions_handles_wecom_separator():
    assert parse_mentions("@用户甲\u2005@用户乙 看一下") == ("用户甲", "用户乙")
