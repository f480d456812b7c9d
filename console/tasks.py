"""After-sales tasks and the desk in the console (docs/rules.md §7): open, assign, complete or cancel a
task, set a staff member's availability, and read the task board and the desk.

Every write is a ControlRecord on the control topic, applied by the dataflow in order with everything
else (the same way as the alert actions, console/actions.py): `create_task` / `update_task` go to the
task's session, `assign_task` / `staff_status` to the desk (operators/desk.py). The request is checked
against what PostgreSQL shows (a clear 404/409/422 now rather than a silent no-op later); the dataflow
checks again when it applies it. Audited like every write; 202 once the broker acknowledged the record.

- `POST /api/tasks` {session_id, user_name, task_type, description?}: a task opened by staff
  (permission tasks.create); the answer names the new task's id.
- `PATCH /api/tasks/{task_id}` {action: assign | complete | cancel, assignee?, reason}: assign needs
  tasks.assign (supervisors), complete and cancel tasks.manage.
- `GET /api/tasks` (filters: status, assignee, type, priority, session_id, user_name, open, overdue),
  `GET /api/tasks/{task_id}`, `GET /api/tasks/types` (code -> label, for the monitor page's board).
- `PUT /api/staff/{name}/status` {status: online | busy | offline} (staff.status); `GET /api/staff`: the
  desk's members with their availability, open tasks and skills.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from console import audit
from console.actions import ActionError, send_audited
from console.auth import AUTH_ERRORS, Principal, require
from console.common import (
    DEFAULT_LIMIT,
    FilterText,
    IdText,
    Limit,
    Offset,
    Page,
    Problem,
    client_addr,
    connection,
    free_text,
    line_text,
    pool_of,
)
from console.permissions import Permission, allows
from worktool.config import PRIORITY_RANK, BusinessConfig
from worktool.models import DESK_SESSION, ControlRecord, UtcDatetime, utc_now

TaskStatusName = Literal["pending", "assigned", "waiting_user", "in_progress", "completed", "cancelled"]
OPEN_STATUSES = ("pending", "assigned", "waiting_user", "in_progress")
Availability = Literal["online", "busy", "offline"]
Actor = line_text(128, min_length=1, strip=True)
Name = line_text(128, min_length=1, strip=True)
Reason = free_text(2000, strip=True)


class TaskNotFound(ActionError):
    status = 404


class TaskConflict(ActionError):
    status = 409


class TaskInvalid(ActionError):
    status = 422


class SessionNotFound(ActionError):
    status = 404


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: Actor | None = Field(
        default=None,
        description="Who asks: required with the service token; for a logged-in account its name is recorded.",
    )


class TaskCreate(_Request):
    session_id: IdText
    user_name: Name = Field(description="The owner the task is for (their display name in the group).")
    task_type: line_text(32, min_length=1) = Field(
        description="A configured task type (after_sales.task_types)."
    )  # type: ignore[valid-type]
    description: Reason = ""


class TaskUpdate(_Request):
    action: Literal["assign", "complete", "cancel"]
    assignee: Name | None = Field(default=None, description="assign: the staff member.")
    reason: Reason = ""


class StaffStatusRequest(_Request):
    status: Availability


class TaskAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    request_id: str
    task_id: str


class StaffAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    request_id: str
    name: str


class TaskRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    task_id: str
    session_id: str | None
    robot_id: str | None
    user_name: str | None
    group_name: str | None
    task_type: str
    issue_description: str | None
    priority: str
    status: TaskStatusName
    assigned_staff_name: str | None
    assigned_at: UtcDatetime | None
    assigned_by: str | None
    waited_minutes: float | None
    opened_at: UtcDatetime | None
    status_at: UtcDatetime | None
    completed_at: UtcDatetime | None
    closed_reason: str | None
    closed_by: str | None
    user_response_status: str
    source_message_id: str | None
    due_at: UtcDatetime | None = Field(description="opened_at + the task type's target (SLA).")
    overdue: bool = Field(description="Open past its due time.")
    age_minutes: float | None = Field(description="Since it was opened, until now or its completion.")


class StaffRow(BaseModel):
    name: str
    status: Availability
    status_at: UtcDatetime | None
    skills: list[str]
    max_open_tasks: int
    on_duty: list[str]
    open_tasks: int


TASK_COLUMNS = tuple(f for f in TaskRow.model_fields if f not in ("due_at", "overdue", "age_minutes"))
_ERRORS: dict[int | str, dict[str, object]] = {
    **AUTH_ERRORS,
    404: {"model": Problem, "description": "Unknown task or session."},
}

tasks_router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=AUTH_ERRORS)
staff_router = APIRouter(prefix="/api/staff", tags=["staff"], responses=AUTH_ERRORS)


def business(request: Request) -> BusinessConfig:
    return request.app.state.business  # type: ignore[no-any-return]


def task_id_for(request_id: str) -> str:
    """The id of a task opened through the API (the dataflow keeps it)."""
    return "task_" + hashlib.blake2b(f"{request_id}\x1fapi".encode(), digest_size=10).hexdigest()


def _actor(principal: Principal, body: _Request) -> str:
    if principal.kind == "service" and body.actor is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "actor is required with the service token")
    return body.actor if principal.kind == "service" and body.actor else principal.name


def with_due(row: dict[str, Any], config: BusinessConfig, now: datetime) -> TaskRow:
    kind = config.after_sales.task_type_by_code.get(row["task_type"])
    opened = row.get("opened_at")
    due = opened + timedelta(minutes=kind.target_minutes) if opened is not None and kind is not None else None
    is_open = row["status"] in OPEN_STATUSES
    end = now if is_open else (row.get("completed_at") or row.get("status_at") or now)
    age = (end - opened).total_seconds() / 60 if opened is not None else None
    return TaskRow.model_validate(
        {**row, "due_at": due, "overdue": bool(is_open and due is not None and now > due), "age_minutes": age}
    )


async def _fetch_task(conn: psycopg.AsyncConnection[Any], task_id: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {', '.join(TASK_COLUMNS)} FROM after_sales_tasks WHERE task_id = %s", [task_id]
        )
        return await cur.fetchone()


async def _send(
    request: Request,
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    record: ControlRecord,
    key: str,
    entry: dict[str, Any],
) -> None:
    audited = audit.AuditEntry(
        actor=principal.name,
        actor_role=principal.role,
        client_addr=client_addr(request),
        request_id=record.request_id,
        **entry,
    )
    await send_audited(request.app.state.producer, conn, record, key, audited)


# -- tasks --------------------------------------------------------------------------------------


@tasks_router.post("", status_code=status.HTTP_202_ACCEPTED, responses=_ERRORS)
async def create_task(
    body: TaskCreate, principal: Annotated[Principal, require(Permission.CREATE_TASKS)], request: Request
) -> TaskAccepted:
    """Open a task for an owner of a session (its type's priority and SLA from the configuration)."""
    config = business(request)
    kind = config.after_sales.task_type_by_code.get(body.task_type)
    if kind is None:
        known = ", ".join(config.after_sales.task_type_by_code)
        raise TaskInvalid(f"unknown task type {body.task_type!r}; configured: {known}")
    actor = _actor(principal, body)
    request_id = str(uuid.uuid4())
    task_id = task_id_for(request_id)
    record = ControlRecord(
        action="create_task", at=utc_now(), actor=actor, request_id=request_id, session_id=body.session_id,
        task_id=task_id, task_type=kind.code, user_name=body.user_name, description=body.description or None,
    )  # fmt: skip
    async with connection(pool_of(request), "cannot read sessions") as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1 FROM sessions WHERE session_id = %s", [body.session_id])
            if await cur.fetchone() is None:
                raise SessionNotFound(f"session {body.session_id} does not exist")
            # one open task per session, owner and type (the dataflow would update that one instead)
            await cur.execute(
                "SELECT task_id FROM after_sales_tasks WHERE session_id = %s AND user_name = %s "
                "AND task_type = %s AND status = ANY(%s) LIMIT 1",
                [body.session_id, body.user_name, kind.code, list(OPEN_STATUSES)],
            )
            existing = await cur.fetchone()
            if existing is not None:
                raise TaskConflict(f"{body.user_name} already has an open {kind.code} task: {existing[0]}")
        entry = {
            "action": "task.create", "target_type": "task", "target_id": task_id, "before": None,
            "after": {"session_id": body.session_id, "user_name": body.user_name, "task_type": kind.code,
                      "priority": kind.priority, "description": body.description, "actor": actor},
        }  # fmt: skip
        await _send(request, conn, principal, record, body.session_id, entry)
    return TaskAccepted(request_id=request_id, task_id=task_id)


def _check_update(
    task: dict[str, Any] | None, task_id: str, body: TaskUpdate, config: BusinessConfig
) -> None:
    if task is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    if task["status"] not in OPEN_STATUSES:
        raise TaskConflict(f"task {task_id} is already {task['status']}")
    if body.action == "assign":
        if not body.assignee:
            raise TaskInvalid("assign needs an assignee")
        if body.assignee not in config.staff and body.assignee not in {
            m.name for m in config.after_sales.desk
        }:
            raise TaskInvalid(f"{body.assignee} is not staff of the configuration")
        if body.assignee == task["assigned_staff_name"]:
            raise TaskConflict(f"task {task_id} is already assigned to {body.assignee}")


@tasks_router.patch("/{task_id}", status_code=status.HTTP_202_ACCEPTED, responses={
    **_ERRORS, 409: {"model": Problem, "description": "The task is closed, or already the assignee's."},
})  # fmt: skip
async def update_task(
    task_id: Annotated[IdText, Path()],
    body: TaskUpdate,
    principal: Annotated[Principal, require(Permission.MANAGE_TASKS)],
    request: Request,
) -> TaskAccepted:
    """Assign (supervisors: tasks.assign), complete or cancel a task, with a reason."""
    if body.action == "assign" and not allows(principal.role, Permission.ASSIGN_TASKS):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"the role {principal.role} may not {Permission.ASSIGN_TASKS.value}"
        )
    config = business(request)
    actor = _actor(principal, body)
    request_id = str(uuid.uuid4())
    async with connection(pool_of(request), "cannot read after_sales_tasks") as conn:
        task = await _fetch_task(conn, task_id)
        _check_update(task, task_id, body, config)
        assert task is not None
        if body.action == "assign":
            record = ControlRecord(
                action="assign_task", at=utc_now(), actor=actor, request_id=request_id, reason=body.reason,
                task_id=task_id, staff_name=body.assignee,
            )  # fmt: skip
            key, after = DESK_SESSION, {"assigned_staff_name": body.assignee}
        else:
            outcome: Literal["completed", "cancelled"] = (
                "completed" if body.action == "complete" else "cancelled"
            )
            record = ControlRecord(
                action="update_task", at=utc_now(), actor=actor, request_id=request_id, reason=body.reason,
                session_id=task["session_id"], task_id=task_id, task_outcome=outcome,
            )  # fmt: skip
            key, after = task["session_id"] or task_id, {"status": outcome}
        entry = {
            "action": f"task.{body.action}", "target_type": "task", "target_id": task_id,
            "before": {"status": task["status"], "assigned_staff_name": task["assigned_staff_name"]},
            "after": {**after, "reason": body.reason, "actor": actor},
        }  # fmt: skip
        await _send(request, conn, principal, record, key, entry)
    return TaskAccepted(request_id=request_id, task_id=task_id)


@tasks_router.get("")
async def list_tasks(
    _: Annotated[Principal, require(Permission.READ)],
    request: Request,
    task_status: Annotated[list[TaskStatusName], Query(alias="status")] = [],  # noqa: B006
    assignee: FilterText | None = None,
    task_type: Annotated[list[FilterText], Query(alias="type")] = [],  # noqa: B006
    priority: Annotated[list[Literal["low", "normal", "high", "urgent"]], Query()] = [],  # noqa: B006
    session_id: FilterText | None = None,
    user_name: FilterText | None = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    overdue: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> Page[TaskRow]:
    """The task board: open tasks first (urgent first, then oldest), then closed ones, newest first."""
    config = business(request)
    conditions: list[str] = []
    params: list[Any] = []
    for column, value in (("status", task_status), ("task_type", task_type), ("priority", priority)):
        if value:
            conditions.append(f"{column} = ANY(%s)")
            params.append(value)
    for column, one in (
        ("assigned_staff_name", assignee),
        ("session_id", session_id),
        ("user_name", user_name),
    ):
        if one is not None:
            conditions.append(f"{column} = %s")
            params.append(one)
    if open_only or overdue:
        conditions.append("status = ANY(%s)")
        params.append(list(OPEN_STATUSES))
    if overdue:  # past its type's target; types not configured any more use the default target
        targets = {t.code: t.target_minutes for t in config.after_sales.task_types}
        conditions.append(
            "opened_at + make_interval(mins => (COALESCE((%s::jsonb ->> task_type)::float, 240))::int) < now()"
        )
        params.append(psycopg.types.json.Jsonb(targets))
    where = " AND ".join(conditions) or "true"
    rank = " ".join(f"WHEN '{p}' THEN {r}" for p, r in PRIORITY_RANK.items())
    order = (
        f"(status IN ('completed', 'cancelled')), CASE priority {rank} ELSE 9 END, "
        "CASE WHEN status IN ('completed', 'cancelled') THEN -extract(epoch FROM status_at) "
        "ELSE extract(epoch FROM opened_at) END, task_id"
    )
    async with (
        connection(pool_of(request), "cannot read after_sales_tasks") as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(f"SELECT count(*) AS n FROM after_sales_tasks WHERE {where}", params)
        total = (await cur.fetchone() or {"n": 0})["n"]
        await cur.execute(
            f"SELECT {', '.join(TASK_COLUMNS)} FROM after_sales_tasks WHERE {where} ORDER BY {order} "
            "LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        rows = await cur.fetchall()
    now = utc_now()
    return Page[TaskRow](
        items=[with_due(r, config, now) for r in rows], total=total, limit=limit, offset=offset
    )


@tasks_router.get("/types")
async def task_types(_: Annotated[Principal, require(Permission.READ)], request: Request) -> dict[str, str]:
    """The configured task types, code -> label (Chinese, what staff see), in configuration order."""
    return {t.code: t.label for t in business(request).after_sales.task_types}


@tasks_router.get("/{task_id}", responses=_ERRORS)
async def get_task(
    task_id: Annotated[IdText, Path()], _: Annotated[Principal, require(Permission.READ)], request: Request
) -> TaskRow:
    async with connection(pool_of(request), "cannot read after_sales_tasks") as conn:
        row = await _fetch_task(conn, task_id)
    if row is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    return with_due(row, business(request), utc_now())


# -- the desk's members ------------------------------------------------------------------------------


@staff_router.put("/{name}/status", status_code=status.HTTP_202_ACCEPTED, responses=_ERRORS)
async def set_staff_status(
    name: Annotated[Name, Path()],
    body: StaffStatusRequest,
    principal: Annotated[Principal, require(Permission.STAFF_STATUS)],
    request: Request,
) -> StaffAccepted:
    """Set a desk member's availability: offline members get no task, busy ones only when nobody online
    can take it; coming online serves the waiting tasks."""
    config = business(request)
    if name not in {m.name for m in config.after_sales.desk}:
        raise TaskNotFound(f"{name} is not a member of the desk (after_sales.desk)")
    actor = _actor(principal, body)
    request_id = str(uuid.uuid4())
    record = ControlRecord(
        action="staff_status", at=utc_now(), actor=actor, request_id=request_id, staff_name=name,
        staff_status=body.status,
    )  # fmt: skip
    async with connection(pool_of(request), "cannot read desk_staff") as conn:
        async with conn.cursor() as cur:
            await cur.execute("SELECT status FROM desk_staff WHERE name = %s", [name])
            before = await cur.fetchone()
        entry = {
            "action": "staff.status", "target_type": "staff", "target_id": name,
            "before": {"status": before[0]} if before else None, "after": {"status": body.status, "actor": actor},
        }  # fmt: skip
        await _send(request, conn, principal, record, DESK_SESSION, entry)
    return StaffAccepted(request_id=request_id, name=name)


@staff_router.get("")
async def list_staff(_: Annotated[Principal, require(Permission.READ)], request: Request) -> list[StaffRow]:
    """The desk's members (configuration order) with their availability and open tasks."""
    members = business(request).after_sales.desk
    names = [m.name for m in members]
    async with connection(pool_of(request), "cannot read desk_staff") as conn, conn.cursor() as cur:
        await cur.execute("SELECT name, status, status_at FROM desk_staff WHERE name = ANY(%s)", [names])
        seen = {name: (st, at) for name, st, at in await cur.fetchall()}
        await cur.execute(
            "SELECT assigned_staff_name, count(*) FROM after_sales_tasks "
            "WHERE assigned_staff_name = ANY(%s) AND status = ANY(%s) GROUP BY assigned_staff_name",
            [names, list(OPEN_STATUSES)],
        )
        load = dict(await cur.fetchall())
    return [
        StaffRow(
            name=m.name,
            status=seen.get(m.name, ("online", None))[0],
            status_at=seen.get(m.name, (None, None))[1],
            skills=m.skills,
            max_open_tasks=m.max_open_tasks,
            on_duty=m.on_duty,
            open_tasks=load.get(m.name, 0),
        )  # fmt: skip
        for m in members
    ]


TASK_ROUTERS = (tasks_router, staff_router)
__all__ = ["TASK_ROUTERS", "TaskRow", "task_id_for", "with_due"]
