"""Serve the console API under uvicorn: `worktool console`, or `serve()` from the stack supervisor.

Beyond a loopback address the console needs WORKTOOL_JWT_SECRET (a secret every instance shares, not
one generated on this machine): any other host without it is refused before anything is bound.
"""

from __future__ import annotations

import logging

import uvicorn

from console.accounts import AccountError
from console.app import configured_token, create_app, is_loopback
from console.tokens import TokenConfigError
from worktool.settings import Settings, get_settings

log = logging.getLogger(__name__)


class ConsoleConfigError(ValueError):
    """Settings the console API refuses to start with."""


def check_serving(settings: Settings) -> None:
    """Raise ConsoleConfigError unless the API can be served as configured."""
    missing = settings.missing("database_url", "kafka_bootstrap_servers")
    if missing:
        raise ConsoleConfigError(f"the console API needs {' and '.join(missing)}")
    if not (settings.jwt_secret or "").strip() and not is_loopback(settings.api_host):
        raise ConsoleConfigError(
            f"refusing to serve the console API on {settings.api_host} without WORKTOOL_JWT_SECRET: set "
            "it (at least 32 random bytes), or keep WORKTOOL_API_HOST on a loopback address (127.0.0.1)"
        )


def serve(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    check_serving(settings)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except (TokenConfigError, AccountError) as e:
        raise ConsoleConfigError(str(e)) from e
    if configured_token(settings) is not None:
        log.info("console API: WORKTOOL_API_TOKEN is the service account (role %s)", settings.api_token_role)
    log.info("console API listening on http://%s:%d (docs at /docs)", settings.api_host, settings.api_port)
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        lifespan="on",
        timeout_graceful_shutdown=10,
        log_config=None,  # keep the process's logging
    )
