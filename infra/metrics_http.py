"""Prometheus metrics over HTTP behind the metrics bearer token (worktool/metrics_auth.py), for the
processes that have no web app of their own: the dataflow and the dispatcher. Serves the default
registry (bytewax's consumer lag included) from a daemon thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from worktool.metrics_auth import CHALLENGE, UNAUTHORIZED_BODY, MetricsAuth


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass  # one line per scrape otherwise


def metrics_app(token: str | None) -> Callable[..., Iterable[bytes]]:
    auth, inner = MetricsAuth(token), make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", CHALLENGE)]
            )
            return [UNAUTHORIZED_BODY]
        return inner(environ, start_response)

    return app


def serve_metrics(host: str, port: int, token: str | None) -> WSGIServer:
    """Serve /metrics on host:port until the process ends; raises OSError when it cannot bind."""
    server = make_server(host, port, metrics_app(token), _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
