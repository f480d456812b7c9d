"""A local fake of the TaxKB knowledge-base service on 127.0.0.1 (infra/taxkb.py speaks to it).

`POST /search` (or the path given) with `Authorization: Bearer <api_key>` and `{"query", "top_k"}`
answers `{"code": 0, "message": "ok", "data": {"results": [...]}}`: the fake's passages that share a
character with the query, most shared characters first, at most top_k, each
`{"id", "title", "content", "score", "source"}`. A missing or wrong key is HTTP 401; a body that is not
JSON, or has no string `query`, is HTTP 400.

Scripted answers go first (`server.script(Reply(status=500))`, `Reply(raw=b"{not json")`,
`Reply(delay_s=2)` for a timeout, `Reply(body={...})` for any JSON); every request is recorded (path,
Authorization header, parsed body).

    with FakeTaxKB(api_key="k" * 24) as kb:
        adapter = TaxKBKnowledgeBase(kb.base_url, "k" * 24)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_PASSAGES: tuple[dict[str, Any], ...] = (
    {"id": "tax-001", "title": "小规模纳税人增值税起征点", "content": "月销售额10万元以下免征增值税。"},
    {"id": "tax-002", "title": "个体工商户如何开具发票", "content": "可以在电子税务局申请代开或自行开具。"},
    {"id": "tax-003", "title": "视频号小店的货款需要缴税吗", "content": "经营所得按规定申报纳税。"},
)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None  # JSON to send instead of the search answer
    raw: bytes | None = None  # bytes to send as they are (malformed JSON)
    delay_s: float = 0.0


@dataclass(frozen=True)
class TaxKBRequest:
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeTaxKB:
    api_key: str | None = "fake-taxkb-key-0123456789"
    path: str = "/search"
    passages: tuple[dict[str, Any], ...] = DEFAULT_PASSAGES
    requests: list[TaxKBRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._scripted: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-taxkb", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._scripted.extend(replies)

    def __enter__(self) -> FakeTaxKB:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- the protocol --------------------------------------------------------------------------------

    def answer(self, path: str, authorization: str | None, raw: bytes) -> tuple[int, bytes, float]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(TaxKBRequest(path, authorization, body))
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            if scripted.raw is not None:
                payload = scripted.raw
            elif scripted.body is not None:
                payload = json.dumps(scripted.body, ensure_ascii=False).encode()
            elif scripted.status != 200:
                payload = json.dumps({"code": scripted.status, "message": "scripted error"}).encode()
            else:
                payload = self._search(body)[1]
            return scripted.status, payload, scripted.delay_s
        if path != self.path:
            return 404, b'{"code": 404, "message": "not found"}', 0.0
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return 401, b'{"code": 401, "message": "invalid api key"}', 0.0
        status, payload = self._search(body)
        return status, payload, 0.0

    def _search(self, body: Any) -> tuple[int, bytes]:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, b'{"code": 400, "message": "query is required"}'
        query, top_k = body["query"], body.get("top_k", 5)
        scored = []
        for passage in self.passages:
            shared = len(set(query) & set(passage["title"] + passage["content"]))
            if shared:
                scored.append(
                    {**passage, "score": round(shared / max(len(set(query)), 1), 4), "source": "taxkb"}
                )
        scored.sort(key=lambda p: -p["score"])
        answer = {"code": 0, "message": "ok", "data": {"results": scored[: int(top_k)]}}
        return 200, json.dumps(answer, ensure_ascii=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-taxkb"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        fake: FakeTaxKB = self.server.fake  # type: ignore[attr-defined]
        status, payload, delay_s = fake.answer(self.path, self.headers.get("Authorization"), raw)
        if delay_s:
            time.sleep(delay_s)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)
