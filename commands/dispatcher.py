"""`worktool dispatcher`: run the dispatcher (dispatcher/service.py) until SIGTERM or Ctrl-C.

A stop lets the request in flight finish, records its answer and commits, then exits 0. Exit codes:
0 stopped; 1 the broker did not take an accepted record while stopping (the claims keep the answer, a
restart records it); 2 missing settings.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from worktool.settings import Settings, get_settings

log = logging.getLogger("worktool.dispatcher")


def _serve_metrics(host: str, port: int, token: str | None) -> None:
    from infra.metrics_http import serve_metrics

    try:
        serve_metrics(host, port, token)
    except OSError as e:  # metrics are not worth refusing to send for
        log.warning("metrics not served on %s:%d: %s", host, port, e)
        return
    log.info("metrics on http://%s:%d/metrics", host, port)


def cli_dispatcher(settings: Settings | None = None) -> int:
    from dispatcher.logs import setup_json_logging
    from dispatcher.recorder import RecordNotWritten
    from dispatcher.service import Dispatcher

    settings = settings or get_settings()
    missing = settings.missing("kafka_bootstrap_servers", "redis_url")
    if missing:
        print(f"the dispatcher needs {' and '.join(missing)}", file=sys.stderr)
        return 2
    setup_json_logging()
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if settings.dispatcher_metrics_port:
        _serve_metrics(
            settings.dispatcher_metrics_host, settings.dispatcher_metrics_port, settings.metrics_token
        )
    try:
        Dispatcher(settings, stop).run()
    except RecordNotWritten as e:
        log.error("%s; a restart records it", e)
        return 1
    return 0
