"""Request bodies, the reading of WorkTool's and the webhooks' answers, the retry policy, and which
offsets may be committed: pure functions, tested directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dispatcher.held import Held, HeldCommands, Route
from dispatcher.offsets import OffsetTracker
from dispatcher.sender import RetryPolicy
from dispatcher.wire import (
    ERROR_OUTCOME_UNKNOWN,
    Answer,
    parse_retry_after,
    read_webhook_answer,
    read_worktool_answer,
    send_raw_message_body,
)
from tests.dispatcher.helpers import command


def test_body_has_one_name_per_item_and_at_list_only_when_needed() -> None:
    body = send_raw_message_body([command("wt_1", target="A群", content="好的", at_list=["用户甲"]),
                                  command("wt_1", target="用户乙", content="第一行\n第二行")])  # fmt: skip
    assert body == {
        "socketType": 2,
        "list": [
            {"type": 203, "titleList": ["A群"], "receivedContent": "好的", "atList": ["用户甲"]},
            {"type": 203, "titleList": ["用户乙"], "receivedContent": "第一行\n第二行"},
        ],
    }


@pytest.mark.parametrize(
    "body",
    [
        '{"code":0,"message":"指令已加入代发队列中！","data":"2020902840222093312"}',
        '{"code":"0","message":"ok","data":"2020902840222093312"}',
        '{"code":200,"message":"操作成功","data":2020902840222093312}',
        '{"message":"消息已加入队列","data":"2020902840222093312"}',
        '{"code":0,"data":{"messageId":"2020902840222093312"}}',
    ],
)
def test_success_answers(body: str) -> None:
    assert read_worktool_answer(200, body.encode()) == Answer("accepted", message_id="2020902840222093312")


def test_non_success_code_is_a_rejection_with_worktools_reason() -> None:
    answer = read_worktool_answer(200, '{"code":101014,"message":"重复指令","data":null}'.encode())
    assert answer == Answer("rejected", error_code=101014, error_reason="重复指令")


def test_http_error_is_a_rejection_with_its_status() -> None:
    answer = read_worktool_answer(503, b"<html>maintenance</html>")
    assert (answer.status, answer.error_code) == ("rejected", 503)
    assert answer.error_reason == "HTTP 503: <html>maintenance</html>"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"message": "something else"}'])
def test_unreadable_200_is_unknown_not_a_failure(body: bytes) -> None:
    """HTTP 200 may mean queued: reported for a manual check, never retried."""
    answer = read_worktool_answer(200, body)
    assert (answer.status, answer.error_code) == ("unknown", ERROR_OUTCOME_UNKNOWN)


def test_webhook_answers() -> None:
    assert read_webhook_answer(200, b'{"id": "call-77"}', "cmd-1") == Answer("accepted", message_id="call-77")
    assert read_webhook_answer(204, b"", "cmd-1") == Answer("accepted", message_id="cmd-1")
    assert read_webhook_answer(400, b"bad number", "cmd-1").error_code == 400


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= (parse_retry_after(in_a_minute) or 0) <= 60


def test_backoff_doubles_and_retry_after_wins_within_the_cap() -> None:
    policy = RetryPolicy(max_tries=3, backoff_s=1.0, max_backoff_s=30.0)
    assert [policy.delay(n, None) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert policy.delay(1, 7.0) == 7.0 and policy.delay(1, 3600.0) == 30.0


def test_commit_position_stops_at_the_oldest_unfinished_record() -> None:
    tracker = OffsetTracker()
    p0 = ("worktool.commands", 0)
    for offset in (10, 11, 12, 13):
        tracker.read(p0, offset)
    assert tracker.committable() == {p0: 10}
    tracker.finished(p0, 11)
    tracker.finished(p0, 13)
    assert tracker.committable() == {p0: 10}  # 10 is still held (not due, or waiting for a token)
    tracker.finished(p0, 10)
    assert tracker.committable() == {p0: 12}
    tracker.committed({p0: 12})
    assert tracker.committable() == {}
    tracker.finished(p0, 12)
    assert tracker.committable() == {p0: 14}
    tracker.forget([p0])
    assert tracker.committable() == {}


def _held(robot_id: str | None, due: float, offset: int, channel: str = "wecom") -> Held:
    cmd = command(robot_id, channel=channel)
    kind = "worktool" if channel == "wecom" else "webhook"
    route = Route(kind, cmd.channel, robot_id or f"webhook:{channel}")  # type: ignore[arg-type]
    return Held(cmd, ("worktool.commands", 0), offset, due, route)


def test_held_commands_wait_for_their_due_time_and_webhooks_go_first() -> None:
    held = HeldCommands()
    early, late = _held("wt_1", due=100.0, offset=0), _held("wt_1", due=200.0, offset=1)
    call = _held(None, due=150.0, offset=2, channel="phone")
    for h in (early, late, call):
        assert held.add(h)
    assert not held.add(early)  # same command id: held once
    assert held.next_due_route(50.0) is None and held.next_due_time() == 100.0
    assert held.next_due_route(160.0) == call.route  # no rate-limit token needed: first
    assert held.take(call.route, 160.0, limit=1) == [call]
    assert held.next_due_route(160.0) == early.route
    assert held.take(early.route, 160.0, limit=100) == [early]  # `late` is not due yet
    assert held.next_due_time() == 200.0 and len(held) == 3
    held.release([early.command_id, call.command_id])
    held.drop_partitions({("worktool.commands", 0)})
    assert len(held) == 0 and held.next_due_time() is None
