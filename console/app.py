"""The console API: operators' manual actions on alerts, accounts, and read endpoints for the monitor page
and for scripts, as its own small ASGI app (the webhook gateway stays minimal).

- `POST /api/auth/login`, `GET /api/auth/me`; `GET|POST /api/users`, `PATCH /api/users/{username}`
  (console/auth.py).
- `POST /api/alerts/{alert_id}/cancel`, `POST /api/alerts/{alert_id}/escalate` with {"reason", "actor"}:
  202 once the control record is acknowledged by the broker; 404 unknown alert; 409 closed alert or
  escalation past level 4; 503 database or broker not answering. Audited.
- `GET /api/alerts/{alert_id}`: the alert_history row, with its escalation history.
- After-sales tasks and the desk (console/tasks.py): `POST /api/tasks`, `PATCH /api/tasks/{task_id}`,
  `GET /api/tasks[/{task_id}]`, `PUT /api/staff/{name}/status`, `GET /api/staff`.
- The after-sales daily report (console/reports.py): `GET /api/reports/daily?date=YYYY-MM-DD` (default:
  the latest).
- Customer profiles (console/customers.py): `GET /api/customers`, `GET /api/customers/{session_id}/{name}`.
- The knowledge base (console/knowledge.py): `GET /api/kb/search?q=&limit=`.
- Lists (console/reads.py): `/api/sessions[/{id}]`, `/api/alerts`, `/api/commands`, `/api/robots`,
  `/api/ai-logs`, `/api/audit`; LLM provider keys (console/llm_keys.py).
- `GET /healthz`; OpenAPI at /docs.

Every /api route but the login needs a bearer token and a permission (console/auth.py,
console/permissions.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field

from console import audit, tokens
from console.accounts import AccountDirectory, load_users_file
from console.actions import (
    ActionError,
    AlertNotFound,
    AlertRow,
    ControlProducer,
    build_control_record,
    check_action,
    control_key,
    fetch_alert_async,
    read_alert_async,
    send_audited,
)
from console.auth import (
    AUTH_ERRORS,
    LoginThrottle,
    Principal,
    auth_router,
    permission_check,
    require,
    users_router,
)
from console.common import IdText, Problem, client_addr, connection, free_text, line_text
from console.customers import CUSTOMER_ROUTERS
from console.knowledge import KB_ROUTERS
from console.llm_keys import llm_router
from console.monitor import monitor_router
from console.permissions import Permission
from console.personas import PERSONA_ROUTERS
from console.reads import READ_ROUTERS
from console.reports import REPORT_ROUTERS
from console.tasks import TASK_ROUTERS
from worktool.config import load_config
from worktool.models import ControlAction
from worktool.settings import Settings

POOL_TIMEOUT_S = 5.0
AlertId = Annotated[IdText, Path()]
Reason = free_text(2000, min_length=1, strip=True)
Actor = line_text(128, min_length=1, strip=True)


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="Why (kept with the alert).")
    actor: Actor | None = Field(
        default=None,
        description="Who asks: required with the service token (scripts name their operator); for a "
        "logged-in account the account name is recorded instead.",
    )


class ActionAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    request_id: str
    alert_id: str


_ERRORS: dict[int | str, dict[str, object]] = {
    **AUTH_ERRORS,
    404: {"model": Problem, "description": "Unknown alert."},
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
        # request that finds no connection within POOL_TIMEOUT_S is answered 503. Every connection is
        # checked (one round trip) before it is handed out: after a PostgreSQL restart the pooled
        # connections are dead, and the check replaces them instead of failing the request.
        own_pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=4,
            timeout=POOL_TIMEOUT_S,
            check=AsyncConnectionPool.check_connection,
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


async def _validation_error(_request: Request, e: Exception) -> JSONResponse:
    """422 without the offending input: it may be a password or an API key."""
    assert isinstance(e, RequestValidationError)
    errors = [{k: v for k, v in err.items() if k in ("type", "loc", "msg")} for err in e.errors()]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


alerts = APIRouter(prefix="/api/alerts", tags=["alerts"])


@alerts.get("/{alert_id}", responses=_ERRORS)
async def get_alert(
    alert_id: AlertId, _: Annotated[Principal, require(Permission.READ)], request: Request
) -> AlertRow:
    """The alert as alert_history has it (kept current by the dataflow), with its escalation history."""
    alert = await read_alert_async(request.app.state.pool, alert_id)
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return alert


def _requested_state(alert: AlertRow, action: ControlAction, reason: str) -> dict[str, Any]:
    """What the action asks for (the dataflow applies it, and re-checks, a moment later)."""
    if action == "cancel_alert":
        return {
            "status": "cancelled",
            "alert_level": alert.alert_level,
            "cancel_reason": "manual",
            "reason": reason,
        }
    return {"status": "escalated", "alert_level": alert.alert_level + 1, "reason": reason}


async def _act(
    request: Request, principal: Principal, alert_id: str, action: ControlAction, body: ActionRequest
) -> ActionAccepted:
    """Check the alert, then in one transaction: the audit row, the control record, the commit once the
    broker acknowledged it. A refused or unacknowledged action leaves no audit row."""
    if principal.kind == "service" and body.actor is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "actor is required with the service token")
    actor = body.actor if principal.kind == "service" and body.actor else principal.name
    async with connection(request.app.state.pool, "cannot read alert_history") as conn:
        alert = check_action(await fetch_alert_async(conn, alert_id), alert_id, action)
        record = build_control_record(alert, action, actor=actor, reason=body.reason)
        entry = audit.AuditEntry(
            actor=principal.name,
            actor_role=principal.role,
            action="alert.cancel" if action == "cancel_alert" else "alert.escalate",
            target_type="alert",
            target_id=alert_id,
            client_addr=client_addr(request),
            request_id=record.request_id,
            before={"status": alert.status, "alert_level": alert.alert_level},
            after={**_requested_state(alert, action, body.reason), "actor": actor},
        )
        accepted = await send_audited(request.app.state.producer, conn, record, control_key(alert), entry)
    return ActionAccepted(request_id=accepted.record.request_id, alert_id=alert_id)


@alerts.post(
    "/{alert_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_ERRORS, 409: {"model": Problem, "description": "The alert is closed."}},
)
async def cancel_alert(
    alert_id: AlertId,
    body: ActionRequest,
    principal: Annotated[Principal, require(Permission.CANCEL_ALERTS)],
    request: Request,
) -> ActionAccepted:
    """Cancel an open alert (cancel reason `manual`)."""
    return await _act(request, principal, alert_id, "cancel_alert", body)


@alerts.post(
    "/{alert_id}/escalate",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **_ERRORS,
        409: {"model": Problem, "description": "The alert is closed, or already at level 4 (the ceiling)."},
    },
)
async def escalate_alert(
    alert_id: AlertId,
    body: ActionRequest,
    principal: Annotated[Principal, require(Permission.ESCALATE_ALERTS)],
    request: Request,
) -> ActionAccepted:
    """Raise an open alert one level (at most level 4)."""
    return await _act(request, principal, alert_id, "escalate_alert", body)


def create_app(
    settings: Settings,
    *,
    pool: AsyncConnectionPool | None = None,
    producer: ControlProducer | None = None,
) -> FastAPI:
    """The console app. The database pool and the producer are created by its lifespan unless given.
    Raises TokenConfigError / AccountError for an unusable JWT secret or users file."""
    app = FastAPI(
        title="WorkTool console API",
        description="Operators' console: accounts and roles, manual actions on alerts (written to the "
        "control topic and applied by the dataflow in order with everything else), read endpoints for "
        "the monitor page and scripts, LLM provider keys, and the audit log of every write.",
        version="2",
        lifespan=_lifespan,
    )
    token = configured_token(settings)
    app.state.settings = settings
    app.state.api_token = token.encode() if token else None
    app.state.jwt_secret = tokens.resolve_secret(settings)
    app.state.accounts = AccountDirectory(load_users_file(settings.users_file))
    app.state.login_throttle = LoginThrottle()
    app.state.pool = pool
    app.state.producer = producer
    app.state.business = load_config(settings.config_path)  # task types and the desk (console/tasks.py)
    app.add_exception_handler(ActionError, _action_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    for router in (
        auth_router,
        users_router,
        alerts,
        *READ_ROUTERS,
        *REPORT_ROUTERS,
        *TASK_ROUTERS,
        *CUSTOMER_ROUTERS,
        *KB_ROUTERS,
        llm_router,
        *PERSONA_ROUTERS,
    ):
        app.include_router(router)
    app.include_router(monitor_router(permission_check(Permission.READ)))
    return app
