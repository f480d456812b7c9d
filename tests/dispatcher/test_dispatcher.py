"""The dispatcher against the real (embedded) broker and Redis and a fake WorkTool: every outcome of a
request becomes one accepted record on worktool.raw with what the outside world answered.

One dispatcher and one fake serve the whole module; each test uses its own robots (the fake's
behaviours are scripted per robot) and its own command ids."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from dispatcher.claims import ClaimStore
from dispatcher.service import NO_ROBOT, route_of
from dispatcher.wire import ERROR_NETWORK, ERROR_NOT_SENDABLE, ERROR_OUTCOME_UNKNOWN
from infra.kafka_admin import ensure_topics
from tests.dispatcher.helpers import ByKey, RawTail, command, produce_commands, running_dispatcher
from tests.fakes.llm_servers import refused_url
from tests.fakes.worktool_server import (
    FakeWorkTool,
    accept,
    drop,
    http_error,
    reject,
    slow,
    too_many,
)
from worktool.models import AcceptedBody
from worktool.settings import Settings

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT_S = 1.0


def dispatcher_settings(
    kafka_bootstrap: str, redis_url: str, data_dir: Path, **overrides: object
) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    topics = {
        "topic_raw": f"worktool.raw.{suffix}",
        "topic_control": f"worktool.control.{suffix}",
        "topic_commands": f"worktool.commands.{suffix}",
        "topic_monitor": f"worktool.monitor.{suffix}",
        "topic_dlq": f"worktool.dlq.{suffix}",
    }
    ensure_topics(kafka_bootstrap, {topics["topic_raw"]: 3, topics["topic_commands"]: 3})
    values: dict[str, object] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "redis_url": redis_url,
        "data_dir": data_dir,
        "dispatcher_group": f"dispatcher-{suffix}",
        "dispatch_rate_key": f"test:rate:{suffix}",
        "dispatch_rate_requests": 1000,  # lifted: these tests are about outcomes
        "dispatch_rate_window_s": 1.0,
        "dispatch_rate_margin_s": 0.0,
        "dispatch_backoff_s": 0.05,
        "dispatch_timeout_s": CLIENT_TIMEOUT_S,
        "dispatcher_metrics_port": 0,
        **topics,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


class Stack:
    def __init__(self, fake: FakeWorkTool, script: ByKey, settings: Settings, raw: RawTail) -> None:
        self.fake, self.script, self.settings, self.raw = fake, script, settings, raw

    def sends_for(self, robot_id: str) -> list:
        return [r for r in self.fake.sends() if r.robot_id == robot_id]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    script = ByKey()
    with FakeWorkTool(default=script) as fake:
        settings = dispatcher_settings(
            kafka_bootstrap,
            redis_url,
            tmp_path_factory.mktemp("dispatcher"),
            api_base_url=fake.url,
            phone_webhook_url=f"{fake.url}/phone",
            sms_webhook_url=f"{fake.url}/sms",
        )
        raw = RawTail(settings)
        with running_dispatcher(settings):
            yield Stack(fake, script, settings, raw)
        raw.close()


def robot() -> str:
    return f"wt_{uuid.uuid4().hex[:8]}"


def only_record(stack: Stack, command_id: str) -> dict:
    stack.raw.wait_for([command_id])
    records = stack.raw.for_command(command_id)
    assert len(records) == 1, records
    AcceptedBody.model_validate(records[0]["body"])  # the contract the dataflow reads
    return records[0]


def test_accepted_request_is_worktools_body_and_its_message_id_is_recorded(stack: Stack) -> None:
    robot_id = robot()
    with_at = command(
        robot_id, target="A群", content="@用户甲 您好，马上为您处理", at_list=["用户甲-138****0000"]
    )
    without_at = command(robot_id, target="B群", content="收到")
    stack.script.script(robot_id, accept())
    produce_commands(stack.settings, [with_at, without_at])

    stack.raw.wait_for([with_at.command_id, without_at.command_id])
    items = [item for request in stack.sends_for(robot_id) for item in request.items]
    assert items == [
        {"type": 203, "titleList": ["A群"], "receivedContent": "@用户甲 您好，马上为您处理",
         "atList": ["用户甲-138****0000"]},
        {"type": 203, "titleList": ["B群"], "receivedContent": "收到"},
    ]  # fmt: skip
    request = stack.sends_for(robot_id)[0]
    assert request.body["socketType"] == 2 and request.query == {"robotId": robot_id}
    record = only_record(stack, with_at.command_id)
    assert record["kind"] == "accepted" and record["robot_id"] == robot_id
    assert record["body"]["messageId"] == request.message_id != ""
    assert record["body"]["errorCode"] == 0 and record["body"]["channel"] == "wecom"
    assert stack.raw.keys[stack.raw.records.index(record)] == f"robot:{robot_id}".encode()


def test_management_style_success_code_200_is_accepted(stack: Stack) -> None:
    robot_id = robot()
    stack.script.script(robot_id, accept(code=200, message="操作成功"))
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    assert only_record(stack, cmd.command_id)["body"]["errorCode"] == 0


def test_rejected_request_fails_at_once_with_worktools_code_and_reason(stack: Stack) -> None:
    robot_id = robot()
    stack.script.script(robot_id, reject(101013, "没有权限"))
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    body = only_record(stack, cmd.command_id)["body"]
    assert (body["errorCode"], body["errorReason"], body["messageId"]) == (101013, "没有权限", "")
    assert len(stack.sends_for(robot_id)) == 1


def test_server_error_fails_at_once(stack: Stack) -> None:
    robot_id = robot()
    stack.script.script(robot_id, http_error(500))
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    body = only_record(stack, cmd.command_id)["body"]
    assert body["errorCode"] == 500 and body["errorReason"].startswith("HTTP 500")
    assert len(stack.sends_for(robot_id)) == 1


def test_429_then_success_honours_retry_after(stack: Stack) -> None:
    robot_id = robot()
    stack.script.script(robot_id, too_many(retry_after="1"), accept())
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    body = only_record(stack, cmd.command_id)["body"]
    first, second = stack.sends_for(robot_id)
    assert body["errorCode"] == 0 and body["messageId"] == second.message_id
    assert second.at - first.at >= 0.95  # waited as told, not the 0.05 s backoff
    assert first.body == second.body


def test_429_three_times_fails_after_three_tries(stack: Stack) -> None:
    robot_id = robot()
    stack.script.script(robot_id, too_many(), too_many(), too_many(), accept())
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    body = only_record(stack, cmd.command_id)["body"]
    assert body["errorCode"] == 429 and "after 3 tries" in body["errorReason"]
    assert len(stack.sends_for(robot_id)) == 3


def test_slow_beyond_the_client_timeout_is_not_resent_but_reported_unknown(stack: Stack) -> None:
    """The request may have been queued: a second one could send the message twice."""
    robot_id = robot()
    stack.script.script(robot_id, slow(CLIENT_TIMEOUT_S + 1.5))
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    body = only_record(stack, cmd.command_id)["body"]
    assert body["errorCode"] == ERROR_OUTCOME_UNKNOWN and "check manually" in body["errorReason"]
    stack.raw.settle(2.0)
    assert len(stack.sends_for(robot_id)) == 1
    assert len(stack.raw.for_command(cmd.command_id)) == 1


def test_dropped_connection_after_sending_is_reported_unknown(stack: Stack) -> None:
    robot_id = robot()
    stack.script.script(robot_id, drop())
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    assert only_record(stack, cmd.command_id)["body"]["errorCode"] == ERROR_OUTCOME_UNKNOWN
    assert len(stack.sends_for(robot_id)) == 1


def test_command_without_robot_fails_without_calling_anything(stack: Stack) -> None:
    marker = f"无机器人-{uuid.uuid4().hex[:6]}"
    cmd = command(None, target=marker)
    produce_commands(stack.settings, [cmd])
    record = only_record(stack, cmd.command_id)
    assert record["robot_id"] == NO_ROBOT
    assert record["body"]["errorCode"] == ERROR_NOT_SENDABLE and "robot_id" in record["body"]["errorReason"]
    assert not [r for r in stack.fake.requests if marker in str(r.body)]


def test_phone_and_sms_go_to_their_webhooks(stack: Stack) -> None:
    target = f"138{uuid.uuid4().int % 10**8:08d}"
    call = command(None, channel="phone", target=target, content="告警：视频号运营A群 用户投诉未处理")
    sms = command(None, channel="sms", target=target, content="告警升级至 4 级")
    produce_commands(stack.settings, [call, sms])

    phone_record = only_record(stack, call.command_id)
    sms_record = only_record(stack, sms.command_id)
    (phone_request,) = [
        r for r in stack.fake.webhook_calls("/phone") if r.body["command_id"] == call.command_id
    ]
    assert phone_request.body == {"command_id": call.command_id, "target": target, "content": call.content}
    assert phone_record["robot_id"] == "webhook:phone" and phone_record["body"]["channel"] == "phone"
    assert phone_record["body"]["messageId"] == phone_request.message_id
    assert sms_record["robot_id"] == "webhook:sms" and sms_record["body"]["errorCode"] == 0


def test_failing_sms_webhook_is_reported_failed(stack: Stack) -> None:
    stack.script.script("/sms", http_error(503), http_error(503), http_error(503))
    sms = command(None, channel="sms", target="13800000000")
    produce_commands(stack.settings, [sms])
    body = only_record(stack, sms.command_id)["body"]
    assert body["errorCode"] == 503 and body["channel"] == "sms"


def test_150_commands_of_one_robot_go_in_requests_of_100_and_50(stack: Stack) -> None:
    robot_id = robot()
    # Due together in a moment (one due time), so that all 150 are in hand when they fall due.
    due = datetime.now(UTC) + timedelta(seconds=2)
    commands = [
        command(robot_id, target=f"群{i}", at_list=["用户甲"] if i % 2 else None).model_copy(
            update={"due_time": due}
        )
        for i in range(150)
    ]
    produce_commands(stack.settings, commands)
    records = stack.raw.wait_for([c.command_id for c in commands])

    requests = stack.sends_for(robot_id)
    assert [len(r.items) for r in requests] == [100, 50]
    items = [item for r in requests for item in r.items]
    assert [item["titleList"] for item in items] == [[f"群{i}"] for i in range(150)]
    assert all(("atList" in item) == (i % 2 == 1) for i, item in enumerate(items))
    # One record per request, its command ids in list order.
    assert [r["body"]["commandIds"] for r in records] == [
        [c.command_id for c in commands[:100]],
        [c.command_id for c in commands[100:]],
    ]
    assert [r["body"]["messageId"] for r in records] == [r.message_id for r in requests]


def test_nothing_is_sent_before_its_due_time(stack: Stack) -> None:
    robot_id = robot()
    later = command(robot_id, due_in_s=3.0)
    produce_commands(stack.settings, [later])
    only_record(stack, later.command_id)
    (request,) = stack.sends_for(robot_id)
    assert request.wall >= later.due_time.timestamp()


def test_a_command_written_twice_is_sent_once(stack: Stack) -> None:
    """The dataflow writes at least once: the claim in Redis keeps the second copy from being sent."""
    robot_id = robot()
    cmd = command(robot_id)
    produce_commands(stack.settings, [cmd])
    stack.raw.wait_for([cmd.command_id])
    produce_commands(stack.settings, [cmd, cmd])
    stack.raw.settle(2.0)
    assert len(stack.sends_for(robot_id)) == 1
    assert len(stack.raw.for_command(cmd.command_id)) == 1


def test_unreachable_worktool_and_unset_webhooks(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    settings = dispatcher_settings(kafka_bootstrap, redis_url, tmp_path, api_base_url=refused_url())
    raw = RawTail(settings)
    text = command("wt_refused")
    call = command(None, channel="phone", target="13800000000")
    assert route_of(call, settings).kind == "not_sendable"
    try:
        with running_dispatcher(settings):
            produce_commands(settings, [text, call])
            raw.wait_for([text.command_id, call.command_id])
    finally:
        raw.close()
    (text_record,) = raw.for_command(text.command_id)
    assert text_record["body"]["errorCode"] == ERROR_NETWORK
    assert (
        "no connection" in text_record["body"]["errorReason"]
        and "3 tries" in text_record["body"]["errorReason"]
    )
    (call_record,) = raw.for_command(call.command_id)
    assert call_record["body"]["errorCode"] == ERROR_NOT_SENDABLE
    assert "WORKTOOL_PHONE_WEBHOOK_URL is not set" in call_record["body"]["errorReason"]


def test_fake_worktool_calls_back_once_per_item_or_never() -> None:
    with FakeWorkTool() as receiver, FakeWorkTool() as worktool:
        worktool.callback_url = f"{receiver.url}/worktool/callback/result"
        body = {"socketType": 2, "list": [{"type": 203, "titleList": ["A群"], "receivedContent": "一"},
                                          {"type": 203, "titleList": ["B群"], "receivedContent": "二"}]}  # fmt: skip
        answer = httpx.post(
            f"{worktool.url}/wework/sendRawMessage", params={"robotId": "wt_1"}, json=body
        ).json()
        callbacks = receiver.wait_for_requests(2, timeout=10)
        assert {c.body["messageId"] for c in callbacks} == {answer["data"]}
        assert [c.body["errorCode"] for c in callbacks] == [0, 0]
        assert callbacks[0].query == {"robotId": "wt_1"} and callbacks[0].path == "/worktool/callback/result"

        worktool.script(accept(callback=False))
        httpx.post(f"{worktool.url}/wework/sendRawMessage", params={"robotId": "wt_1"}, json=body)
        time.sleep(0.5)  # a callback would have been sent by now (no delay configured)
        assert len(worktool.requests) == 2 and len(receiver.requests) == 2


def test_claims_left_by_a_dead_dispatcher_are_reported_never_resent(stack: Stack) -> None:
    """`sending`: died between send and answer → outcome unknown. `answered`: died before the record
    was acknowledged → that same answer is recorded."""
    assert stack.settings.redis_url
    claims = ClaimStore(redis.Redis.from_url(stack.settings.redis_url), ttl_s=60)
    robot_id = robot()
    in_flight, answered = command(robot_id), command(robot_id)
    claims.claim([in_flight.command_id, answered.command_id])
    earlier = AcceptedBody(messageId="2020902840222090000", commandIds=[answered.command_id])
    claims.answered([answered.command_id], earlier.model_dump_json().encode())
    produce_commands(stack.settings, [in_flight, answered])

    unknown = only_record(stack, in_flight.command_id)["body"]
    assert unknown["errorCode"] == ERROR_OUTCOME_UNKNOWN and "restart" in unknown["errorReason"]
    assert only_record(stack, answered.command_id)["body"] == earlier.model_dump(mode="json")
    assert stack.sends_for(robot_id) == []
    assert {c: s.state for c, s in claims.claim([in_flight.command_id, answered.command_id]).items()} == {
        in_flight.command_id: "done",
        answered.command_id: "done",
    }
