"""The console API: operators' manual actions on alerts, as its own small ASGI app (the webhook gateway
stays minimal).

- `POST /api/alerts/{alert_id}/cancel`, `POST /api/alerts/{alert_id}/escalate` with {"reason", "actor"}:
  202 once the control record is acknowledged by the broker; 404 unknown alert; 409 closed alert or
  escalation past level 4; 503 database or broker not answering.
- `GET /api/alerts/{alert_id}`: the alert_history row.
- `GET /healthz`; OpenAPI at /docs.

Authentication: `Authorization: Bearer <WORKTOOL_API_TOKEN>` on /api/*. Without a token configured the
API is open, so it answers loopback clients only (console/server.py also refuses to bind elsewhere).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from console.actions import (
    ActionError,
    AlertNotFound,
    AlertRow,
    ControlProducer,
    perform_action_async,
    read_alert_async,
)
from console.monitor import monitor_router
from worktool.models import ControlAction
from worktool.settings import Settings

POOL_TIMEOUT_S = 5.0
AlertId = Annotated[str, Path(min_length=1, max_length=200)]


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] = Field(
        description="Why (kept with the alert)."
    )
    actor: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)] = Field(
        description="Who asks (an operator's name)."
    )


class ActionAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    request_id: str
    alert_id: str


class Problem(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    404: {"model": Problem, "description": "Unknown alert."},
    503: {"model": Problem, "description": "The database or the broker did not answer."},
}


def configured_token(settings: Settings) -> str | None:
    token = (settings.api_token or "").strip()
    return token or None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_bearer = HTTPBearer(auto_error=False, description="WORKTOOL_API_TOKEN")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected: bytes | None = request.app.state.api_token
    if expected is None:
        # No token: open, but to loopback clients only (in case the app is served elsewhere).
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, "no API token is configured: loopback clients only"
            )
        return
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the database pool and the producer unless create_app was given them (then the caller
    owns them)."""
    settings: Settings = app.state.settings
    own_pool = own_producer = None
    if app.state.pool is None:
        if not settings.database_url:
            raise RuntimeError("the console API needs DATABASE_URL")
        # Opened without waiting: the API starts even while the database is still coming up, and a
        # request that finds no connection within POOL_TIMEOUT_S is answered 503.
        own_pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=4,
            timeout=POOL_TIMEOUT_S,
            kwargs={"autocommit": True},  # single reads: no transaction to end
            open=False,
        )
        await own_pool.open(wait=False)
        app.state.pool = own_pool
    if app.state.producer is None:
        if not settings.kafka_bootstrap_servers:
            raise RuntimeError("the console API needs KAFKA_BOOTSTRAP_SERVERS")
        own_producer = ControlProducer(
            settings.kafka_bootstrap_servers, settings.topic_control, timeout_s=settings.api_produce_timeout_s
        )
        app.state.producer = own_producer
    try:
        yield
    finally:
        if own_producer is not None:
            own_producer.close()
        if own_pool is not None:
            await own_pool.close()


async def _action_error(_request: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, ActionError)
    return JSONResponse({"detail": e.detail}, status_code=e.status)


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


alerts = APIRouter(prefix="/api/alerts", dependencies=[Depends(authenticate)], tags=["alerts"])


@alerts.get("/{alert_id}", responses=_ERRORS)
async def get_alert(alert_id: AlertId, request: Request) -> AlertRow:
    """The alert as alert_history has it (kept current by the dataflow)."""
    alert = await read_alert_async(request.app.state.pool, alert_id)
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return alert


async def _act(request: Request, alert_id: str, action: ControlAction, body: ActionRequest) -> ActionAccepted:
    _, accepted = await perform_action_async(
        request.app.state.pool,
        request.app.state.producer,
        alert_id,
        action,
        actor=body.actor,
        reason=body.reason,
    )
    return ActionAccepted(request_id=accepted.record.request_id, alert_id=alert_id)


@alerts.post(
    "/{alert_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_ERRORS, 409: {"model": Problem, "description": "The alert is closed."}},
)
async def cancel_alert(alert_id: AlertId, body: ActionRequest, request: Request) -> ActionAccepted:
    """Cancel an open alert (cancel reason `manual`)."""
    return await _act(request, alert_id, "cancel_alert", body)


@alerts.post(
    "/{alert_id}/escalate",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **_ERRORS,
        409: {"model": Problem, "description": "The alert is closed, or already at level 4 (the ceiling)."},
    },
)
async def escalate_alert(alert_id: AlertId, body: ActionRequest, request: Request) -> ActionAccepted:
    """Raise an open alert one level (at most level 4)."""
    return await _act(request, alert_id, "escalate_alert", body)


def create_app(
    settings: Settings,
    *,
    pool: AsyncConnectionPool | None = None,
    producer: ControlProducer | None = None,
) -> FastAPI:
    """The console app. The database pool and the producer are created by its lifespan unless given."""
    app = FastAPI(
        title="WorkTool console API",
        description="Operators' manual actions on alerts. They are written to the control topic and "
        "applied by the dataflow in order with everything else.",
        version="1",
        lifespan=_lifespan,
    )
    token = configured_token(settings)
    app.state.settings = settings
    app.state.api_token = token.encode() if token else None
    app.state.pool = pool
    app.state.producer = producer
    app.add_exception_handler(ActionError, _action_error)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    app.include_router(alerts)
    app.include_router(monitor_router(authenticate))
    return app
