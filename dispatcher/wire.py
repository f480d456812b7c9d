"""What goes over the wire to WorkTool, the phone/SMS webhooks and Feishu's custom bot, and how their answers
are read (docs/platform.md §2). Pure functions: no I/O, so every answer shape is tested directly."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from worktool.models import CommandRecord

SEND_PATH = "/wework/sendRawMessage"
SEND_TEXT = 203  # WorkTool's command type "send text"

# errorCode of an accepted record when WorkTool gave none (its own codes are positive).
ERROR_NOT_SENDABLE = -1  # no robot, or no webhook configured: nothing was called
ERROR_OUTCOME_UNKNOWN = -2  # the request may have been queued: check by hand, never resend
ERROR_NETWORK = -3  # no connection after every try: nothing reached the other side

# WorkTool's success codes differ per API family (0 for sendRawMessage, 200 for robotInfo/*); the old
# client also accepted these texts when the code was missing.
SUCCESS_CODES = frozenset({0, 200})
SUCCESS_TEXTS = frozenset({"指令已加入代发队列中！", "消息已加入队列", "已加入发送队列"})

AnswerStatus = Literal["accepted", "rejected", "unknown"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, read: accepted (with WorkTool's messageId), rejected (errorCode/errorReason),
    or unknown (an HTTP 200 we cannot read: it may have been queued)."""

    status: AnswerStatus
    message_id: str = ""
    error_code: int = 0
    error_reason: str = ""


def text_item(command: CommandRecord) -> dict[str, Any]:
    """One type-203 item: exactly one name in titleList (WorkTool retries failures, several names risk
    duplicate sends); atList only when someone is @-mentioned."""
    item: dict[str, Any] = {
        "type": SEND_TEXT,
        "titleList": [command.target],
        "receivedContent": command.content,
    }
    if command.at_list:
        item["atList"] = list(command.at_list)
    return item


def send_raw_message_body(commands: Sequence[CommandRecord]) -> dict[str, Any]:
    return {"socketType": 2, "list": [text_item(c) for c in commands]}


def webhook_body(command: CommandRecord) -> dict[str, Any]:
    return {"command_id": command.command_id, "target": command.target, "content": command.content}


def feishu_sign(timestamp: str, secret: str) -> str:
    """Feishu's signature of a custom bot's request: base64 of HMAC-SHA256 keyed with
    "<timestamp>\n<secret>" over an empty message (Feishu accepts a timestamp within an hour of its clock)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def feishu_body(command: CommandRecord, secret: str | None, now_s: float) -> dict[str, Any]:
    """A Feishu custom bot's text message; signed (`timestamp` in seconds, `sign`) when the bot has a
    signing secret. Built per try: a retry signs again."""
    body: dict[str, Any] = {"msg_type": "text", "content": {"text": command.content}}
    if secret:
        timestamp = str(int(now_s))
        body["timestamp"] = timestamp
        body["sign"] = feishu_sign(timestamp, secret)
    return body


def snippet(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", errors="replace").strip()
    return text + ("…" if len(body) > limit else "")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _message_id(data: Any) -> str:
    if isinstance(data, str | int) and not isinstance(data, bool):
        return str(data)
    if isinstance(data, dict):
        return str(data.get("messageId") or data.get("id") or "")
    return ""


def read_worktool_answer(status_code: int, body: bytes) -> Answer:
    """sendRawMessage's answer (not 429, which the sender retries): success is HTTP 200 with code 0 or
    200 (or, without a code, one of the success texts); `data` is the messageId."""
    if status_code != 200:
        return Answer("rejected", error_code=status_code, error_reason=f"HTTP {status_code}: {snippet(body)}")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        return Answer(
            "unknown",
            error_code=ERROR_OUTCOME_UNKNOWN,
            error_reason=f"HTTP 200 with an answer that is not a JSON object: {snippet(body)}",
        )
    code = _as_int(parsed.get("code"))
    message = str(parsed.get("message") or parsed.get("msg") or "")
    if code in SUCCESS_CODES or (code is None and message in SUCCESS_TEXTS):
        return Answer("accepted", message_id=_message_id(parsed.get("data")))
    if code is not None:
        return Answer("rejected", error_code=code, error_reason=message or f"WorkTool answered code {code}")
    return Answer(
        "unknown",
        error_code=ERROR_OUTCOME_UNKNOWN,
        error_reason=f"HTTP 200 without a code WorkTool documents: {snippet(body)}",
    )


def read_webhook_answer(status_code: int, body: bytes, command_id: str) -> Answer:
    """A phone/SMS webhook: any 2xx accepts; the messageId is the id it returned, else our command id."""
    if not 200 <= status_code < 300:
        return Answer("rejected", error_code=status_code, error_reason=f"HTTP {status_code}: {snippet(body)}")
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    returned = ""
    if isinstance(parsed, dict):
        returned = _message_id(parsed.get("messageId") or parsed.get("id") or parsed.get("data"))
    return Answer("accepted", message_id=returned or command_id)


# Feishu answers HTTP 200 with a JSON `code` (the older `StatusCode`): 0 success; e.g. 19021 signature
# mismatch (or a timestamp off by more than an hour), 19024 IP not allowed, 9499 bad request, 11232
# frequency limited. It returns no message id: the accepted record carries our command id.
FEISHU_SUCCESS = 0


def read_feishu_answer(status_code: int, body: bytes, command_id: str) -> Answer:
    """A Feishu custom bot's answer: accepted on `code` 0; rejected with Feishu's code and msg, or with the
    HTTP status when there is no code; unknown for an HTTP 200 we cannot read (it may have been posted)."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        raw = parsed.get("code", parsed.get("StatusCode"))
        code = _as_int(raw)
        message = str(parsed.get("msg") or parsed.get("StatusMessage") or "")
        if code == FEISHU_SUCCESS and status_code == 200:
            return Answer("accepted", message_id=command_id)
        if code is not None and code != FEISHU_SUCCESS:
            return Answer("rejected", error_code=code, error_reason=message or f"Feishu answered code {code}")
    if status_code != 200:
        return Answer("rejected", error_code=status_code, error_reason=f"HTTP {status_code}: {snippet(body)}")
    return Answer(
        "unknown",
        error_code=ERROR_OUTCOME_UNKNOWN,
        error_reason=f"HTTP 200 without a code Feishu documents: {snippet(body)}",
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
