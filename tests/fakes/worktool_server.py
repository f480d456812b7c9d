"""A local fake of WorkTool's send API (docs/platform.md §2) and of the phone/SMS webhooks.

`POST /wework/sendRawMessage?robotId=ID` answers like WorkTool; any other path is a webhook answering
`{"id": "<generated>"}`. Each request gets a scripted `Behaviour`: queued ones first (`server.script(...)`),
then `server.default`, which may also be a function of the request. Every request is recorded with its
arrival time (monotonic and wall clock), whatever it was answered.

With `callback_url` set, every accepted sendRawMessage request is followed (after `callback_delay_s`) by
one result callback per item of its list, as WorkTool does (docs/platform.md §1.2), to
`{callback_url}?robotId=ID`; without it, or with `Behaviour.callback=False`, nothing calls back.

    with FakeWorkTool() as worktool:
        worktool.script(too_many(retry_after="1"), accept())
        settings = Settings(api_base_url=worktool.url, ...)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx

SEND_PATH = "/wework/sendRawMessage"
QUEUED = "指令已加入代发队列中！"

Action = Literal["accept", "reject", "http_error", "drop"]


@dataclass(frozen=True)
class Behaviour:
    action: Action = "accept"
    code: int = 0  # WorkTool's `code` (accept: 0 or 200; reject: anything else)
    message: str = QUEUED
    status: int = 200  # HTTP status of http_error
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before answering (or dropping)
    callback: bool = True  # send result callbacks for an accepted request (when callback_url is set)
    callback_error_code: int = 0
    callback_error_reason: str = ""


def accept(code: int = 0, message: str = QUEUED, delay_s: float = 0.0, **callback: Any) -> Behaviour:
    return Behaviour("accept", code=code, message=message, delay_s=delay_s, **callback)


def reject(code: int = 101011, message: str = "数据格式错误") -> Behaviour:
    return Behaviour("reject", code=code, message=message)


def http_error(status: int, retry_after: str | None = None, delay_s: float = 0.0) -> Behaviour:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Behaviour("http_error", status=status, headers=headers, delay_s=delay_s)


def too_many(retry_after: str | None = None) -> Behaviour:
    return http_error(429, retry_after)


def slow(delay_s: float) -> Behaviour:
    return accept(delay_s=delay_s)


def drop(delay_s: float = 0.0) -> Behaviour:
    """Read the request, then close the connection without an answer."""
    return Behaviour("drop", delay_s=delay_s)


Responder = Behaviour | Callable[["SeenRequest"], Behaviour]


@dataclass
class SeenRequest:
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival
    behaviour: Behaviour | None = None
    message_id: str = ""  # what it was answered with, when accepted

    @property
    def robot_id(self) -> str:
        return self.query.get("robotId", "")

    @property
    def items(self) -> list[dict[str, Any]]:
        return list(self.body.get("list", []))

    @property
    def is_send(self) -> bool:
        return self.path == SEND_PATH


class FakeWorkTool:
    def __init__(self, default: Responder | None = None, callback_url: str | None = None) -> None:
        self.default: Responder = default or accept()
        self.callback_url = callback_url
        self.callback_delay_s = 0.0
        self.requests: list[SeenRequest] = []
        self.callbacks_sent: list[dict[str, Any]] = []
        self._queue: deque[Behaviour] = deque()
        self._ids = itertools.count(2020902840222093312)
        self._lock = threading.Condition()
        self._httpd: ThreadingHTTPServer | None = None

    # -- test API ------------------------------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def sends(self) -> list[SeenRequest]:
        """The sendRawMessage requests so far, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.is_send]

    def webhook_calls(self, path: str) -> list[SeenRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[SeenRequest]:
        """Block until at least `count` requests have arrived (whatever their answer)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} requests after {timeout} s, wanted {count}")
            return list(self.requests)

    def start(self) -> FakeWorkTool:
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.request_queue_size = 128
        threading.Thread(target=httpd.serve_forever, args=(0.05,), name="fake-worktool", daemon=True).start()
        self._httpd = httpd
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeWorkTool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour -----------------------------------------------------------------------------

    def _arrived(self, seen: SeenRequest) -> Behaviour:
        with self._lock:
            self.requests.append(seen)
            behaviour = self._queue.popleft() if self._queue else None
            self._lock.notify_all()
        if behaviour is None:
            behaviour = self.default(seen) if callable(self.default) else self.default
        seen.behaviour = behaviour
        return behaviour

    def _new_message_id(self) -> str:
        with self._lock:
            return str(next(self._ids))

    def _call_back(self, seen: SeenRequest, behaviour: Behaviour) -> None:
        """WorkTool's result callbacks: one per item, all with the request's messageId."""
        if not (self.callback_url and behaviour.callback and seen.is_send):
            return

        def run() -> None:
            time.sleep(self.callback_delay_s)
            for item in seen.items:
                body = {
                    "messageId": seen.message_id,
                    "errorCode": behaviour.callback_error_code,
                    "errorReason": behaviour.callback_error_reason,
                    "runTime": int(time.time() * 1000),
                    "timeCost": 2.5,
                    "type": item.get("type", 203),
                    "rawMsg": json.dumps(item, ensure_ascii=False),
                }
                with contextlib.suppress(httpx.HTTPError):
                    httpx.post(
                        self.callback_url or "", params={"robotId": seen.robot_id}, json=body, timeout=5
                    )
                with self._lock:
                    self.callbacks_sent.append(body)

        threading.Thread(target=run, name="fake-worktool-callback", daemon=True).start()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeWorkTool
    protocol_version = "HTTP/1.1"  # keep-alive, like a real API
    # Headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms per answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_unparsed": raw.decode("utf-8", errors="replace")}
        seen = SeenRequest(split.path, query, body, time.monotonic(), time.time())
        behaviour = self.fake._arrived(seen)
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        if behaviour.action == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        status, payload = self._answer(seen, behaviour)
        # The client may have given up (timeout): expected in the slow scenarios.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(status, payload, behaviour.headers)
        if behaviour.action == "accept":
            self.fake._call_back(seen, behaviour)

    def _answer(self, seen: SeenRequest, behaviour: Behaviour) -> tuple[int, dict[str, Any]]:
        if behaviour.action == "http_error":
            return behaviour.status, {"code": behaviour.status, "message": "scripted HTTP error"}
        if behaviour.action == "reject":
            return 200, {"code": behaviour.code, "message": behaviour.message, "data": None}
        seen.message_id = self.fake._new_message_id()
        if seen.is_send:
            return 200, {"code": behaviour.code, "message": behaviour.message, "data": seen.message_id}
        return 200, {"id": seen.message_id}

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
