"""The dataflow's one-pass parse of message records (`MessageRecord` with a strict body) gives exactly
what the careful two-pass parse (`RawRecord`, then `MessageCallback`) gives: the same message, or the
same DLQ record, for well-formed, loose, hostile and broken bodies."""

from __future__ import annotations

import orjson
import pytest

from dataflows.flow import _parse, _parse_checked
from operators.shard import ParsedMessage
from tests.dataflows.records import msg, raw
from worktool.models import DlqRecord, MessageRecord

BODIES = [
    msg("佣金什么时候结算？", "用户甲"),
    msg("@运营助理小A 在吗", "用户乙", atMe=True, rawSpoken="@运营助理小A\u2005在吗"),
    msg("", "用户丙", textType=2, fileBase64="aGVsbG8="),
    msg("私聊", "用户丁", roomType=2, groupName=""),
    msg("extra keys", "用户戊", unknownKey={"nested": [1, 2]}, robotId="x"),
    msg("带NUL\x00的文字", "用户己"),
    msg("名字带NUL", "用户\x00庚"),
    msg("loose", "用户辛", atMe="false", roomType="1", textType="1"),
    msg("worktool's spellings", "用户辛", atMe="true", roomType="1"),
    msg("worktool's spellings, private", "用户辛", atMe="false", roomType="2", groupName=""),
    msg("near spellings", "用户辛", atMe="True", roomType=" 3"),
    msg("room as text out of range", "用户辛", roomType="5"),
    msg("loose numbers", "用户壬", groupName=12345, groupRemark=1.5),
    msg("nulls", "用户癸", spoken=None, groupRemark=None, atMe=None),
    msg("bool as int", "用户子", atMe=1),
    msg("bad bool", "用户丑", atMe="maybe"),
    msg("bool room", "用户寅", roomType=True),
    msg("room 9", "用户卯", roomType=9),
    msg("text type huge", "用户辰", textType=2**40),
    msg("text type negative", "用户巳", textType=-1),
    msg("float text type", "用户午", textType=1.0),
    msg("no group name", "用户未", groupName="", groupRemark=""),
    msg("empty sender", ""),
    {k: v for k, v in msg("no sender", "x").items() if k != "receivedName"},
    msg(["a list"], "用户申"),
    msg("file null", "用户酉", fileBase64=None),
]


def _records() -> list[bytes]:
    out = [raw("message", "wt_day", i, body) for i, body in enumerate(BODIES)]
    seq = orjson.loads(out[0]) | {"seq": {"gw": "g1", "n": 7, "void": [3]}}
    out.append(orjson.dumps(seq))
    out.append(out[0].replace(b'"wt_day"', b'""'))  # no robot id
    out.append(out[0].replace(b"2026-11-20T01:00:00Z", b"yesterday"))
    return out


@pytest.mark.parametrize("record", _records(), ids=lambda r: r.decode("utf-8", "replace")[:80])
def test_the_fast_path_parses_like_the_careful_one(record):
    fast, careful = _parse(record), _parse_checked(record)
    if isinstance(careful[0], DlqRecord):
        assert isinstance(fast[0], DlqRecord)
        assert fast[0].model_dump(exclude={"received_at"}) == careful[0].model_dump(exclude={"received_at"})
        assert fast[1] == careful[1]
    else:
        assert fast == careful
        assert isinstance(fast[0], ParsedMessage)


def test_the_fast_path_takes_the_ordinary_records_and_leaves_the_loose_ones():
    ordinary = raw("message", "wt_day", 1, msg("好的", "用户甲"))
    MessageRecord.model_validate_json(ordinary)  # one pass
    # WorkTool's own example sends atMe as text: half of a real day's records, read in one pass too
    spelled = MessageRecord.model_validate_json(
        raw("message", "wt_day", 1, msg("x", "用户", atMe="true", roomType="3"))
    )
    assert spelled.body.atMe is True and spelled.body.roomType == 3
    loose = (
        msg("x", "用户", atMe="yes"),
        msg("x", "用户", atMe=" false"),
        msg("x", "用户", roomType="01"),
        msg("x", "用户", textType="1"),
        msg("x\x00", "用户"),
        msg("x", "用户", spoken=None),
    )
    for body in loose:
        with pytest.raises(ValueError):  # refused here, read by the careful path
            MessageRecord.model_validate_json(raw("message", "wt_day", 1, body))
