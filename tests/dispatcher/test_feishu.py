"""Channel `feishu`: the desk's daily report to a Feishu custom bot. The request body and its signature,
the reading of Feishu's answers (pure), and the dispatcher against the real (embedded) broker and Redis and
a local fake Feishu that checks the signature independently: one accepted record per command on
worktool.raw with Feishu's verdict, and neither the webhook URL (its token) nor the secret in any log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.service import route_of
from dispatcher.wire import ERROR_NOT_SENDABLE, ERROR_OUTCOME_UNKNOWN, Answer, feishu_body, read_feishu_answer
from operators.commands import CommandTracker, RobotLedger
from operators.timers import ShardClock
from tests.dispatcher.helpers import RawTail, command, produce_commands, running_dispatcher
from tests.dispatcher.test_dispatcher import dispatcher_settings
from tests.fakes.feishu_server import (
    BAD_REQUEST,
    FREQUENCY_LIMITED,
    SIGN_FAILED,
    FakeFeishu,
    Scripted,
    expected_sign,
)
from worktool.config import CommandConfig, HealthConfig
from worktool.models import AcceptedBody
from worktool.settings import Settings

SECRET = "feishu-signing-secret-3c9e1f"
TOKEN = f"hook-token-{uuid.uuid4().hex}"
REPORT = "【售后日报 2026-03-01】新开工单 5，完成 4（完成率 60%），超时未完成 1。"


def feishu_command(content: str = REPORT):
    return command(None, channel="feishu", target="feishu", content=content)


# ---------------------------------------------------------------------------------------------
# Pure: body, signature, answers, routes, settings


def test_unsigned_body_is_feishus_text_message() -> None:
    cmd = feishu_command()
    assert feishu_body(cmd, None, 1_772_000_000.7) == {"msg_type": "text", "content": {"text": REPORT}}


def test_signed_body_carries_the_timestamp_in_seconds_and_its_sign() -> None:
    body = feishu_body(feishu_command(), SECRET, 1_772_000_000.7)
    assert body["timestamp"] == "1772000000"
    assert body["sign"] == expected_sign("1772000000", SECRET)
    assert body["sign"] != expected_sign("1772000001", SECRET) != expected_sign("1772000000", SECRET + "x")
    assert (body["msg_type"], body["content"]) == ("text", {"text": REPORT})


@pytest.mark.parametrize(
    ("status", "answer", "expected"),
    [
        (200, b'{"code":0,"msg":"success","data":{}}', Answer("accepted", message_id="cmd-1")),
        (200, b'{"StatusCode":0,"StatusMessage":"success"}', Answer("accepted", message_id="cmd-1")),
        (
            200,
            b'{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}',
            Answer(
                "rejected",
                error_code=19021,
                error_reason="sign match fail or timestamp is not within one hour from current time",
            ),
        ),
        (200, b'{"code":11232,"msg":"frequency limited"}', Answer("rejected", error_code=11232, error_reason="frequency limited")),
        (400, b'{"code":9499,"msg":"Bad Request","data":{}}', Answer("rejected", error_code=9499, error_reason="Bad Request")),
        (200, b'{"code":"19001"}', Answer("rejected", error_code=19001, error_reason="Feishu answered code 19001")),
        (502, b"<html>bad gateway</html>", Answer("rejected", error_code=502, error_reason="HTTP 502: <html>bad gateway</html>")),
        (503, b'{"code":0}', Answer("rejected", error_code=503, error_reason='HTTP 503: {"code":0}')),
    ],
)  # fmt: skip
def test_feishu_answers(status: int, answer: bytes, expected: Answer) -> None:
    assert read_feishu_answer(status, answer, "cmd-1") == expected


@pytest.mark.parametrize("answer", [b"ok", b"", b"[]", b'{"msg":"success"}'])
def test_an_unreadable_200_is_unknown_not_a_failure(answer: bytes) -> None:
    read = read_feishu_answer(200, answer, "cmd-1")
    assert (read.status, read.error_code) == ("unknown", ERROR_OUTCOME_UNKNOWN)


def test_feishu_is_a_webhook_route_only_when_its_url_is_set() -> None:
    cmd = feishu_command()
    unset = route_of(cmd, Settings())
    assert (unset.kind, unset.channel, unset.robot_id) == ("not_sendable", "feishu", "webhook:feishu")
    assert unset.reason == "WORKTOOL_FEISHU_WEBHOOK_URL is not set: no feishu webhook"
    blank = route_of(cmd, Settings(feishu_webhook_url="  "))
    assert blank.kind == "not_sendable"
    route = route_of(cmd, Settings(feishu_webhook_url="https://open.feishu.cn/open-apis/bot/v2/hook/x"))
    assert (route.kind, route.robot_id, route.needs_token) == ("webhook", "webhook:feishu", False)


def test_settings_read_feishu_from_the_environment_and_never_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().feishu_configured is False
    monkeypatch.setenv("WORKTOOL_FEISHU_WEBHOOK_URL", f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}")
    monkeypatch.setenv("WORKTOOL_FEISHU_SECRET", SECRET)
    settings = Settings()
    assert settings.feishu_configured and settings.feishu_secret == SECRET
    assert TOKEN not in repr(settings) and SECRET not in repr(settings) and SECRET not in str(settings)
    assert settings.weak_secrets() == []
    weak = Settings(feishu_secret="change-me").weak_secrets()
    assert weak == ["WORKTOOL_FEISHU_SECRET holds a placeholder value: replace it with a random one"]


def test_an_accepted_feishu_command_is_completed_at_once_by_the_dataflow() -> None:
    """Feishu calls nothing back: the dataflow reads the dispatcher's accepted record as the command's end."""
    body = AcceptedBody.model_validate(
        {"messageId": "cmd-1", "commandIds": ["cmd-1"], "errorCode": 0, "channel": "feishu"}
    )
    tracker = CommandTracker(CommandConfig(), HealthConfig())
    at = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    out = tracker.accepted(RobotLedger(), ShardClock(), "robot:webhook:feishu", "webhook:feishu", body, at)
    assert [(e.event, getattr(e.data, "status", None)) for e in out] == [
        ("command_sent", None),
        ("command_result", "completed"),
    ]


# ---------------------------------------------------------------------------------------------
# The dispatcher against a fake Feishu


class Stack:
    def __init__(self, fake: FakeFeishu, settings: Settings, raw: RawTail) -> None:
        self.fake, self.settings, self.raw = fake, settings, raw

    def only_record(self, command_id: str) -> dict:
        self.raw.wait_for([command_id])
        [record] = self.raw.for_command(command_id)
        AcceptedBody.model_validate(record["body"])  # the contract the dataflow reads
        return record


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with FakeFeishu(TOKEN, secret=SECRET) as fake:
        settings = dispatcher_settings(
            kafka_bootstrap,
            redis_url,
            tmp_path_factory.mktemp("feishu"),
            feishu_webhook_url=fake.url,
            feishu_secret=SECRET,
        )
        raw = RawTail(settings)
        with running_dispatcher(settings):
            yield Stack(fake, settings, raw)
        raw.close()


@pytest.mark.integration
def test_a_signed_report_is_accepted_and_recorded(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cmd = feishu_command()
    produce_commands(stack.settings, [cmd])
    record = stack.only_record(cmd.command_id)

    [request] = [r for r in stack.fake.requests if r.body.get("content", {}).get("text") == REPORT]
    assert request.code == 0 and request.path.endswith(TOKEN)
    assert set(request.body) == {"msg_type", "content", "timestamp", "sign"}
    assert record["robot_id"] == "webhook:feishu"
    assert record["body"]["channel"] == "feishu" and record["body"]["errorCode"] == 0
    assert record["body"]["messageId"] == cmd.command_id
    # Ours, that is: httpx logs every URL at INFO, which the dispatcher's logging turns off
    # (dispatcher/logs.py sets the httpx logger to WARNING).
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours)
    assert "webhook:feishu" in logged  # the request line was logged ...
    assert TOKEN not in logged and SECRET not in logged  # ... without the URL's token or the secret


@pytest.mark.integration
def test_feishus_refusals_are_failed_with_its_code_and_msg(stack: Stack) -> None:
    stack.fake.script(Scripted(code=FREQUENCY_LIMITED, msg="frequency limited"))
    limited = feishu_command("第一条")
    produce_commands(stack.settings, [limited])
    body = stack.only_record(limited.command_id)["body"]
    assert (body["errorCode"], body["errorReason"]) == (FREQUENCY_LIMITED, "frequency limited")

    empty = feishu_command("")  # Feishu refuses an empty text
    produce_commands(stack.settings, [empty])
    body = stack.only_record(empty.command_id)["body"]
    assert (body["errorCode"], body["errorReason"]) == (BAD_REQUEST, "Bad Request")


@pytest.mark.integration
def test_a_wrong_secret_or_no_secret_is_refused_by_a_signing_bot(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    with FakeFeishu(TOKEN, secret=SECRET) as fake:
        for n, secret in enumerate(("not-the-bots-secret", None)):
            settings = dispatcher_settings(
                kafka_bootstrap,
                redis_url,
                tmp_path / str(n),
                feishu_webhook_url=fake.url,
                feishu_secret=secret,
            )
            raw = RawTail(settings)
            cmd = feishu_command()
            try:
                with running_dispatcher(settings):
                    produce_commands(settings, [cmd])
                    raw.wait_for([cmd.command_id])
            finally:
                raw.close()
            [record] = raw.for_command(cmd.command_id)
            assert record["body"]["errorCode"] == SIGN_FAILED
            assert record["body"]["errorReason"].startswith("sign match fail")
        unsigned = fake.requests[-1].body
        assert set(unsigned) == {"msg_type", "content"}


@pytest.mark.integration
def test_without_a_feishu_url_nothing_is_called(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    settings = dispatcher_settings(kafka_bootstrap, redis_url, tmp_path)
    raw = RawTail(settings)
    cmd = feishu_command()
    try:
        with running_dispatcher(settings):
            produce_commands(settings, [cmd])
            raw.wait_for([cmd.command_id])
    finally:
        raw.close()
    [record] = raw.for_command(cmd.command_id)
    assert record["robot_id"] == "webhook:feishu"
    assert record["body"]["errorCode"] == ERROR_NOT_SENDABLE
    assert "WORKTOOL_FEISHU_WEBHOOK_URL is not set" in record["body"]["errorReason"]
