"""A local stand-in for WorkTool's send API, for `worktool up --demo`: the demo's replies and notices go
through the real dispatcher to this sandbox instead of the internet, and the sandbox answers as WorkTool
does (`{"code":0,"data":"<messageId>"}`) and, a moment later, calls the gateway's result callback once per
command of the request. So the demo shows every command reaching `completed`, and no message leaves the
machine.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx

log = logging.getLogger(__name__)

_ids = itertools.count(2020902840222100000)


class SandboxWorkTool:
    def __init__(self, gateway_url: str, callback_delay_s: float = 1.0) -> None:
        self.gateway_url = gateway_url
        self.callback_delay_s = callback_delay_s
        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="worktool-sandbox", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SandboxWorkTool:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                robot = parse_qs(url.query).get("robotId", [""])[0]
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                message_id = str(next(_ids))
                answer = {"code": 0, "message": "指令已加入代发队列中！", "data": message_id}
                data = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                sandbox.requests += 1
                items = body.get("list") or []
                threading.Thread(
                    target=sandbox._call_back, args=(robot, message_id, items), daemon=True
                ).start()

            def log_message(self, *args: object) -> None:  # quiet: the dispatcher logs every request
                pass

        return Handler

    def _call_back(self, robot: str, message_id: str, items: list[dict]) -> None:
        time.sleep(self.callback_delay_s)
        for item in items:
            result = {"messageId": message_id, "errorCode": 0, "errorReason": "", "runTime": int(time.time() * 1000),
                      "timeCost": 1.2, "type": item.get("type", 203), "rawMsg": json.dumps(item, ensure_ascii=False)}  # fmt: skip
            try:
                httpx.post(f"{self.gateway_url}/worktool/callback/result", params={"robotId": robot}, json=result,
                           timeout=5)  # fmt: skip
            except httpx.HTTPError as e:
                log.warning("sandbox result callback failed: %s", e)
