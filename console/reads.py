"""Read endpoints for the monitor page and for scripts: sessions (with their messages), alerts,
commands, robots, AI call logs and the audit log. Every list is a page (limit/offset, at most
MAX_LIMIT rows) in a stable order, filtered by exact values; a repeated query parameter means "any of".
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from console import audit
from console.actions import AlertRow
from console.auth import AUTH_ERRORS, Principal, require
from console.common import (
    DEFAULT_LIMIT,
    FilterText,
    IdText,
    Limit,
    Offset,
    Page,
    Problem,
    connection,
    pool_of,
    read_page,
)
from console.permissions import Permission
from worktool.models import CommandChannel, UtcDatetime

Reader = Annotated[Principal, require(Permission.READ)]
SessionId = Annotated[IdText, Path()]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


# ---------------------------------------------------------------------------------------------
# Sessions


class LastMessage(_Row):
    message_id: str
    sender_name: str | None
    sender_type: str | None
    content: str
    message_type: str | None
    received_at: UtcDatetime


class SessionSummary(_Row):
    session_id: str
    is_group: bool
    group_name: str | None
    group_remark: str | None
    user_name: str | None
    status: str
    ai_paused: bool
    staff_active_until: UtcDatetime | None
    message_count: int
    first_message_at: UtcDatetime | None
    last_message_at: UtcDatetime | None
    satisfaction: float | None
    last_message: LastMessage | None
    open_alerts: int


class SessionMessage(_Row):
    message_id: str
    session_id: str
    robot_id: str | None
    received_at: UtcDatetime
    sender_name: str | None
    sender_type: str | None
    content: str
    content_kind: str | None
    message_type: str | None
    confidence: float | None
    decided_by: str | None
    sentiment: float | None
    need_reply: bool | None
    staff_command: str | None
    is_staff_intervention: bool
    intervention_reason: str | None
    is_echo: bool
    at_me: bool
    mentions: list[str]


class SessionDetail(_Row):
    session: SessionSummary
    messages: Page[SessionMessage]


_SESSION_COLUMNS = ", ".join(
    f"s.{c}" for c in SessionSummary.model_fields if c not in {"last_message", "open_alerts"}
)
_SESSION_SELECT = f"""{_SESSION_COLUMNS},
    (SELECT jsonb_build_object('message_id', m.message_id, 'sender_name', m.sender_name,
            'sender_type', m.sender_type, 'content', m.content, 'message_type', m.message_type,
            'received_at', m.received_at)
       FROM session_messages m WHERE m.session_id = s.session_id
      ORDER BY m.received_at DESC, m.message_id DESC LIMIT 1) AS last_message,
    (SELECT count(*) FROM alert_history a
      WHERE a.session_id = s.session_id AND a.status IN ('open', 'escalated')) AS open_alerts"""

sessions_router = APIRouter(prefix="/api/sessions", tags=["sessions"], responses=AUTH_ERRORS)


@sessions_router.get("")
async def list_sessions(
    _: Reader,
    request: Request,
    session_status: Annotated[
        list[FilterText], Query(alias="status", description="'auto' or a staff state")
    ] = [],  # noqa: B006
    is_group: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[SessionSummary]:
    """Sessions, most recently active first, with their last message and open alerts."""
    async with connection(pool_of(request), "cannot read sessions") as conn:
        return await read_page(
            conn,
            SessionSummary,
            select=_SESSION_SELECT,
            source="sessions s",
            filters={"s.status": session_status, "s.is_group": is_group},
            order_by="s.last_message_at DESC NULLS LAST, s.session_id",
            limit=limit,
            offset=offset,
        )


@sessions_router.get(
    "/{session_id:text_path}", responses={404: {"model": Problem, "description": "Unknown session."}}
)
async def get_session(
    session_id: SessionId,
    _: Reader,
    request: Request,
    order: Annotated[Literal["asc", "desc"], Query(description="Messages oldest or newest first.")] = "desc",
    sender_type: Annotated[list[FilterText], Query()] = [],  # noqa: B006
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> SessionDetail:
    """One session and a page of its messages."""
    async with connection(pool_of(request), "cannot read sessions") as conn:
        found = await read_page(
            conn,
            SessionSummary,
            select=_SESSION_SELECT,
            source="sessions s",
            filters={"s.session_id": session_id},
            order_by="s.session_id",
            limit=1,
            offset=0,
        )
        if not found.items:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"session {session_id} does not exist")
        direction = "ASC" if order == "asc" else "DESC"
        messages = await read_page(
            conn,
            SessionMessage,
            select=", ".join(SessionMessage.model_fields),
            source="session_messages",
            filters={"session_id": session_id, "sender_type": sender_type},
            order_by=f"received_at {direction}, message_id {direction}",
            limit=limit,
            offset=offset,
        )
    return SessionDetail(session=found.items[0], messages=messages)


# ---------------------------------------------------------------------------------------------
# Alerts (GET /api/alerts/{alert_id} is console/app.py's, beside the actions)

alerts_list_router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=AUTH_ERRORS)
AlertStatus = Literal["open", "escalated", "cancelled", "resolved"]
AlertLevel = Annotated[int, Field(ge=1, le=4)]


@alerts_list_router.get("")
async def list_alerts(
    _: Reader,
    request: Request,
    alert_status: Annotated[list[AlertStatus], Query(alias="status")] = [],  # noqa: B006
    level: Annotated[list[AlertLevel], Query()] = [],  # noqa: B006
    alert_type: Annotated[list[FilterText], Query(alias="type")] = [],  # noqa: B006
    session_id: FilterText | None = None,
    robot_id: FilterText | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[AlertRow]:
    """Alerts, newest first, each with its escalation history."""
    async with connection(pool_of(request), "cannot read alert_history") as conn:
        return await read_page(
            conn,
            AlertRow,
            select=", ".join(AlertRow.model_fields),
            source="alert_history",
            filters={
                "status": alert_status,
                "alert_level": level,
                "alert_type": alert_type,
                "session_id": session_id,
                "robot_id": robot_id,
            },
            order_by="raised_at DESC, alert_id",
            limit=limit,
            offset=offset,
        )


# ---------------------------------------------------------------------------------------------
# Commands, robots


class CommandRow(_Row):
    command_id: str
    robot_id: str | None
    channel: str
    command_type: int
    target: str | None
    content: str | None
    at_list: list[str]
    priority: int
    status: Literal["pending", "sent", "completed", "failed", "timeout", "unknown"]
    worktool_message_id: str | None
    retry_count: int
    error_code: int | None
    error_message: str | None
    cause_event: str | None
    cause_id: str | None
    due_at: UtcDatetime | None
    sent_at: UtcDatetime | None
    completed_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


CommandStatus = Literal["pending", "sent", "completed", "failed", "timeout", "unknown"]
commands_router = APIRouter(prefix="/api/commands", tags=["commands"], responses=AUTH_ERRORS)


@commands_router.get("")
async def list_commands(
    _: Reader,
    request: Request,
    command_status: Annotated[list[CommandStatus], Query(alias="status")] = [],  # noqa: B006
    robot_id: FilterText | None = None,
    channel: CommandChannel | None = None,
    cause_id: FilterText | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[CommandRow]:
    """Commands to WorkTool and notifications, newest first."""
    async with connection(pool_of(request), "cannot read robot_commands") as conn:
        return await read_page(
            conn,
            CommandRow,
            select=", ".join(CommandRow.model_fields),
            source="robot_commands",
            filters={
                "status": command_status,
                "robot_id": robot_id,
                "channel": channel,
                "cause_id": cause_id,
            },
            order_by="created_at DESC, command_id",
            limit=limit,
            offset=offset,
        )


class RobotRow(_Row):
    robot_id: str
    name: str | None
    role: str | None
    status: Literal["online", "offline", "unknown"]
    health_status: Literal["healthy", "warning", "critical"]
    health_score: int
    last_seen_at: UtcDatetime | None
    last_status_at: UtcDatetime | None
    send_failure_count: int
    consecutive_failure_count: int
    last_send_failure_at: UtcDatetime | None
    sessions: int
    updated_at: UtcDatetime


robots_router = APIRouter(prefix="/api/robots", tags=["robots"], responses=AUTH_ERRORS)
_ROBOT_SELECT = ", ".join(f"r.{c}" for c in RobotRow.model_fields if c != "sessions") + (
    ", (SELECT count(*) FROM session_robots sr WHERE sr.robot_id = r.robot_id) AS sessions"
)


@robots_router.get("")
async def list_robots(
    _: Reader,
    request: Request,
    robot_status: Annotated[list[Literal["online", "offline", "unknown"]], Query(alias="status")] = [],  # noqa: B006
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[RobotRow]:
    """Robots with their status, health and how many sessions each is in."""
    async with connection(pool_of(request), "cannot read robots") as conn:
        return await read_page(
            conn,
            RobotRow,
            select=_ROBOT_SELECT,
            source="robots r",
            filters={"r.status": robot_status},
            order_by="r.robot_id",
            limit=limit,
            offset=offset,
        )


# ---------------------------------------------------------------------------------------------
# AI call logs, audit log


class AiLogRow(_Row):
    id: int
    call_id: str
    session_id: str | None
    message_id: str | None
    robot_id: str | None
    operation_type: str | None
    provider: str | None
    model_id: str | None
    ai_input: str | None
    ai_output: str | None
    status: str | None
    error_message: str | None
    request_duration_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    called_at: UtcDatetime


ai_logs_router = APIRouter(prefix="/api/ai-logs", tags=["ai"], responses=AUTH_ERRORS)


@ai_logs_router.get("")
async def list_ai_logs(
    _: Annotated[Principal, require(Permission.READ_AI_LOGS)],
    request: Request,
    call_status: Annotated[list[FilterText], Query(alias="status", description="success, error, ...")] = [],  # noqa: B006
    operation_type: FilterText | None = None,
    provider: FilterText | None = None,
    session_id: FilterText | None = None,
    message_id: FilterText | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[AiLogRow]:
    """LLM calls (prompt, completion, latency, tokens), newest first."""
    async with connection(pool_of(request), "cannot read ai_io_logs") as conn:
        return await read_page(
            conn,
            AiLogRow,
            select=", ".join(AiLogRow.model_fields),
            source="ai_io_logs",
            filters={
                "status": call_status,
                "operation_type": operation_type,
                "provider": provider,
                "session_id": session_id,
                "message_id": message_id,
            },
            order_by="called_at DESC, id DESC",
            limit=limit,
            offset=offset,
        )


audit_router = APIRouter(prefix="/api/audit", tags=["audit"], responses=AUTH_ERRORS)


@audit_router.get("")
async def list_audit(
    _: Annotated[Principal, require(Permission.READ_AUDIT)],
    request: Request,
    action: audit.AuditAction | None = None,
    actor: FilterText | None = None,
    target_type: audit.AuditTarget | None = None,
    target_id: FilterText | None = None,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[audit.AuditRow]:
    """Every write made through the console or `worktool users`, newest first."""
    filters = {"action": action, "actor": actor, "target_type": target_type, "target_id": target_id}
    async with connection(pool_of(request), "cannot read audit_log") as conn:
        rows, total = await audit.read_page(
            conn, {k: v for k, v in filters.items() if v is not None}, limit=limit, offset=offset
        )
    return Page[audit.AuditRow](items=rows, total=total, limit=limit, offset=offset)


READ_ROUTERS = [
    sessions_router,
    alerts_list_router,
    commands_router,
    robots_router,
    ai_logs_router,
    audit_router,
]
