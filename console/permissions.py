"""Who may do what in the console: the one permission table.

Roles (worktool.settings.ConsoleRole): admin (超级管理员), supervisor (客服主管), staff (普通客服), inspector
(质检员). Every /api route names the permission it needs (console/auth.py `require`); a principal whose
role lacks it gets 403.
"""

from __future__ import annotations

from enum import StrEnum
from typing import get_args

from worktool.settings import ConsoleRole

Role = ConsoleRole
ROLES: tuple[Role, ...] = get_args(ConsoleRole)


class Permission(StrEnum):
    READ = "read"  # sessions, messages, alerts, commands, robots
    ESCALATE_ALERTS = "alerts.escalate"
    CANCEL_ALERTS = "alerts.cancel"
    CREATE_TASKS = "tasks.create"
    MANAGE_TASKS = "tasks.manage"  # complete or cancel a task
    ASSIGN_TASKS = "tasks.assign"  # give a task to someone (the desk does it by itself otherwise)
    STAFF_STATUS = "staff.status"  # a desk member's availability
    READ_AI_LOGS = "ai_logs.read"
    MANAGE_USERS = "users.manage"
    READ_AUDIT = "audit.read"
    MANAGE_LLM_KEYS = "llm_keys.manage"
    MANAGE_PERSONAS = "personas.manage"  # read and version the reply personas


_P = Permission

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    # Runs the shift: acts on alerts and tasks, reviews the AI.
    "supervisor": frozenset(
        {
            _P.READ,
            _P.ESCALATE_ALERTS,
            _P.CANCEL_ALERTS,
            _P.CREATE_TASKS,
            _P.MANAGE_TASKS,
            _P.ASSIGN_TASKS,
            _P.STAFF_STATUS,
            _P.READ_AI_LOGS,
        }
    ),  # fmt: skip
    # Front line: may ask for help (escalate), open, complete and cancel tasks, and say whether they are
    # available; silencing an alert and handing tasks out are a supervisor's call.
    "staff": frozenset({_P.READ, _P.ESCALATE_ALERTS, _P.CREATE_TASKS, _P.MANAGE_TASKS, _P.STAFF_STATUS}),
    # Quality review: reads everything the operation produced, AI calls included; changes nothing.
    "inspector": frozenset({_P.READ, _P.READ_AI_LOGS}),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def permissions_of(role: Role) -> list[str]:
    """The role's permissions, sorted (what GET /api/auth/me reports)."""
    return sorted(p.value for p in ROLE_PERMISSIONS.get(role, frozenset()))
