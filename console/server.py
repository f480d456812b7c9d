"""Serve the console API under uvicorn: `worktool console`, or `serve()` from the stack supervisor.

Without WORKTOOL_API_TOKEN the API is unauthenticated, so it only listens on a loopback address: any
other host is refused before anything is bound.
"""

from __future__ import annotations

import logging

import uvicorn

from console.app import configured_token, create_app, is_loopback
from worktool.settings import Settings, get_settings

log = logging.getLogger(__name__)


class ConsoleConfigError(ValueError):
    """Settings the console API refuses to start with."""


def check_serving(settings: Settings) -> None:
    """Raise ConsoleConfigError unless the API can be served as configured."""
    missing = [
        alias
        for alias, value in (
            ("DATABASE_URL", settings.database_url),
            ("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
        )
        if not value
    ]
    if missing:
        raise ConsoleConfigError(f"the console API needs {' and '.join(missing)}")
    if configured_token(settings) is None and not is_loopback(settings.api_host):
        raise ConsoleConfigError(
            f"refusing to serve the console API on {settings.api_host} without a token: set "
            "WORKTOOL_API_TOKEN, or keep WORKTOOL_API_HOST on a loopback address (127.0.0.1)"
        )


def serve(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    check_serving(settings)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if configured_token(settings) is None:
        log.warning("console API is unauthenticated (no WORKTOOL_API_TOKEN): listening on loopback only")
    log.info("console API listening on http://%s:%d (docs at /docs)", settings.api_host, settings.api_port)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        lifespan="on",
        timeout_graceful_shutdown=10,
        log_config=None,  # keep the process's logging
    )
