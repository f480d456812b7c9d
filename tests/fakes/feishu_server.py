"""A local fake of a Feishu custom bot (飞书自定义机器人) on 127.0.0.1.

`POST /open-apis/bot/v2/hook/<token>` with `{"msg_type": "text", "content": {"text": ...}}` answers like
Feishu: HTTP 200 with `{"code": 0, "msg": "success", "data": {}}`, or a Feishu error code:

- an unknown token: 19001 (`param invalid: incoming webhook access token invalid`);
- a body that is not a text message: 9499 (`Bad Request`), HTTP 400 for JSON it cannot parse;
- with `secret` set: a missing or wrong `sign`, or a `timestamp` more than an hour from now: 19021
  (`sign match fail or timestamp is not within one hour from current time`), checked independently of the
  code under test (HMAC-SHA256 keyed with "<timestamp>\\n<secret>" over an empty message, base64);
- scripted answers first (`server.script(code=11232, msg="frequency limited")`, or `status=` for an
  HTTP error).

Every request is recorded (path, parsed body, the code it got).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOOK_PATH = "/open-apis/bot/v2/hook/"
SIGN_FAILED = 19021
BAD_REQUEST = 9499
TOKEN_INVALID = 19001
FREQUENCY_LIMITED = 11232


@dataclass(frozen=True)
class Scripted:
    code: int = 0
    msg: str = "success"
    status: int = 200


@dataclass(frozen=True)
class FeishuRequest:
    path: str
    body: Any
    code: int  # what the fake answered


def expected_sign(timestamp: str, secret: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), digestmod=hashlib.sha256)  # empty message
    return base64.b64encode(mac.digest()).decode()


class FakeFeishu:
    def __init__(self, token: str, secret: str | None = None) -> None:
        self.token = token
        self.secret = secret
        self.requests: list[FeishuRequest] = []
        self._scripted: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-feishu", daemon=True)

    @property
    def url(self) -> str:
        """The bot's webhook URL, token included."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{HOOK_PATH}{self.token}"

    def script(self, *answers: Scripted) -> None:
        with self._lock:
            self._scripted.extend(answers)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[FeishuRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.requests)} Feishu requests, expected {count}")

    def __enter__(self) -> FakeFeishu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the protocol --------------------------------------------------------------------------------

    def answer(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            body = json.loads(raw)
        except ValueError:
            return self._record(path, raw, 400, BAD_REQUEST, "Bad Request")
        if path != HOOK_PATH + self.token:
            return self._record(
                path, body, 200, TOKEN_INVALID, "param invalid: incoming webhook access token invalid"
            )
        if self.secret is not None and not self._signed(body):
            return self._record(
                path,
                body,
                200,
                SIGN_FAILED,
                "sign match fail or timestamp is not within one hour from current time",
            )
        text = body.get("content", {}).get("text") if isinstance(body.get("content"), dict) else None
        if body.get("msg_type") != "text" or not isinstance(text, str) or not text:
            return self._record(path, body, 200, BAD_REQUEST, "Bad Request")
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else Scripted()
        return self._record(path, body, scripted.status, scripted.code, scripted.msg)

    def _signed(self, body: dict[str, Any]) -> bool:
        timestamp, sign = body.get("timestamp"), body.get("sign")
        if not isinstance(timestamp, str) or not timestamp.isdigit() or not isinstance(sign, str):
            return False
        if abs(time.time() - int(timestamp)) > 3600:
            return False
        assert self.secret is not None
        return hmac.compare_digest(sign, expected_sign(timestamp, self.secret))

    def _record(self, path: str, body: Any, status: int, code: int, msg: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(FeishuRequest(path, body, code))
        return status, {"code": code, "msg": msg, "data": {}}


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-feishu"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        status, payload = self.server.fake.answer(self.path, raw)  # type: ignore[attr-defined]
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
