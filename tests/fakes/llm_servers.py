"""Small local LLM servers speaking the OpenAI chat-completions and DashScope text-generation protocols.

Each request gets a scripted `Behaviour`: queued ones first (`server.script(...)`), then `server.default`,
which may also be a function of the request body (to script concurrent batches by message text). The
server records every request and the peak number of requests in flight.

    with FakeOpenAIServer() as server:
        server.script(http_error(500), ok())
        settings = Settings(llm_provider="openai", llm_base_url=server.base_url, ...)
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_ANSWER: dict[str, Any] = {
    "message_type": "chat_complaint",
    "confidence": 0.92,
    "reason": "号主在表达不满",
    "sentiment": -0.8,
    "need_reply": True,
}
USAGE = {"input": 321, "output": 45}


@dataclass(frozen=True)
class Behaviour:
    status: int = 200
    content: str | None = None  # the model's text; None means DEFAULT_ANSWER
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    reject_json_mode: bool = False  # 400 when the request asks for response_format
    error_message: str = "scripted error"


def ok(answer: dict[str, Any] | None = None, delay_s: float = 0.0) -> Behaviour:
    return Behaviour(content=json.dumps(answer or DEFAULT_ANSWER, ensure_ascii=False), delay_s=delay_s)


def slow(delay_s: float) -> Behaviour:
    return ok(delay_s=delay_s)


def malformed() -> Behaviour:
    return Behaviour(content='{"message_type": "chat_daily", "confidence": 0.9,')


def bad_type() -> Behaviour:
    return ok({**DEFAULT_ANSWER, "message_type": "chat_weather"})


def http_error(status: int, retry_after: str | None = None, message: str = "scripted error") -> Behaviour:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Behaviour(status=status, headers=headers, error_message=message)


def rejects_json_mode() -> Behaviour:
    return Behaviour(content=json.dumps(DEFAULT_ANSWER, ensure_ascii=False), reject_json_mode=True)


Responder = Behaviour | Callable[[dict[str, Any]], Behaviour]


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival

    def user_text(self) -> str:
        """The user turn of the chat, whichever protocol carried it."""
        messages = self.body.get("messages") or self.body.get("input", {}).get("messages", [])
        return "".join(m["content"] for m in messages if m["role"] == "user")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: a class attribute, read when the constructor listens (set on the instance
    # afterwards it changed nothing, and a burst of more than five connects waited for a SYN retry, 1 s).
    request_queue_size = 128


class FakeLLMServer:
    path = ""

    def __init__(self, default: Responder | None = None) -> None:
        self.default: Responder = default or ok()
        self.requests: list[SeenRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
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

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> FakeLLMServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name=f"fake-{type(self).__name__}", daemon=True
        ).start()
        self._httpd = httpd
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- protocol ------------------------------------------------------------------------------

    def success_body(self, model: str, content: str) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def _next(self, body: dict[str, Any]) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.default(body) if callable(self.default) else self.default

    def _enter(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


class FakeOpenAIServer(FakeLLMServer):
    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def success_body(self, model: str, content: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": USAGE["input"],
                "completion_tokens": USAGE["output"],
                "total_tokens": USAGE["input"] + USAGE["output"],
            },
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "fake_error", "code": str(status)}}


class FakeDashScopeServer(FakeLLMServer):
    # dashscope.AioGeneration posts to {base_http_api_url}/services/aigc/text-generation/generation
    path = "/api/v1/services/aigc/text-generation/generation"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/v1"

    def success_body(self, model: str, content: str) -> dict[str, Any]:
        return {
            "request_id": "fake-request",
            "output": {
                "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
            },
            "usage": {
                "input_tokens": USAGE["input"],
                "output_tokens": USAGE["output"],
                "total_tokens": USAGE["input"] + USAGE["output"],
            },
        }

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        code = {429: "Throttling.RateQuota", 500: "InternalError"}.get(status, "InvalidParameter")
        return {"request_id": "fake-request", "code": code, "message": message}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw or b"{}")
        seen = SeenRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        fake = self.fake
        fake._enter(seen)
        try:
            status, payload, headers = self._respond(fake, body)
        finally:
            # Leave before answering: the client may send its next request as soon as it has the answer.
            fake._leave()
        # The client may have given up (timeout): expected in the slow scenarios.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(status, payload, headers)

    def _respond(
        self, fake: FakeLLMServer, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.path != fake.path:
            return 404, fake.error_body(404, f"no such path {self.path}"), {}
        behaviour = fake._next(body)
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        if behaviour.reject_json_mode and _asks_json_mode(body):
            return 400, fake.error_body(400, "response_format is not supported"), {}
        if behaviour.status != 200:
            return (
                behaviour.status,
                fake.error_body(behaviour.status, behaviour.error_message),
                behaviour.headers,
            )
        content = behaviour.content
        if content is None:
            content = json.dumps(DEFAULT_ANSWER, ensure_ascii=False)
        return 200, fake.success_body(body.get("model", ""), content), {}

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _asks_json_mode(body: dict[str, Any]) -> bool:
    fmt = body.get("response_format") or body.get("parameters", {}).get("response_format")
    return bool(fmt)


def refused_url() -> str:
    """A local URL nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
