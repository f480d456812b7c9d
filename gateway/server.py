"""Run the gateway under uvicorn: `worktool gateway`, or `serve()` from the stack supervisor.

uvloop + httptools, no access log (a log line per webhook would cost more than the webhook),
`settings.gateway_workers` processes. With more than one worker each process claims its own spool slot
(gateway/spool.py) and Prometheus runs in multiprocess mode so /metrics sums all workers.
"""

from __future__ import annotations

import logging
import os
import shutil

import uvicorn
from fastapi import FastAPI

from worktool.settings import Settings, get_settings

log = logging.getLogger(__name__)


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings come from the environment."""
    from gateway.app import create_app

    return create_app(get_settings())


def _export(settings: Settings) -> None:
    """Make worker processes (which read the environment) see exactly these settings."""
    os.environ.update(settings.as_env())


def serve(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workers = max(1, settings.gateway_workers)
    common = dict(
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    log.info(
        "gateway listening on http://%s:%d (%d worker(s))", settings.http_host, settings.http_port, workers
    )
    if workers == 1:
        from gateway.app import create_app

        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return
    # Prometheus multiprocess mode must be on before any worker imports prometheus_client.
    metrics_dir = settings.data_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    _export(settings)
    uvicorn.run("gateway.server:app_from_env", factory=True, workers=workers, **common)  # type: ignore[arg-type]
