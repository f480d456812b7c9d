"""The audit log: one append-only `audit_log` row per write made through the console or `worktool users`.

A row is inserted in the same transaction as the write it describes (for alert actions: committed only
once the broker acknowledged the control record), so the log holds what happened and nothing else.
Secrets never enter it: accounts are recorded without their hash, LLM keys by fingerprint only.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from worktool.models import UtcDatetime

AuditAction = Literal[
    "alert.cancel", "alert.escalate", "user.create", "user.update", "llm_key.set",
    "task.create", "task.assign", "task.complete", "task.cancel", "staff.status", "persona.update",
]  # fmt: skip
AuditTarget = Literal["alert", "user", "llm_key", "task", "staff", "persona"]


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    actor: str = Field(description="The account (or service account) that made the change.")
    actor_role: str | None = Field(description="Its role at the time; null for the local users command.")
    action: AuditAction
    target_type: AuditTarget
    target_id: str
    client_addr: str | None = Field(description='HTTP client address, or "local:<host>" for the command.')
    request_id: str | None = Field(default=None, description="The control record's request_id (alerts).")
    before: dict[str, Any] | None = Field(description="The target before; null if it did not exist.")
    after: dict[str, Any] | None


class AuditRow(AuditEntry):
    audit_id: int
    at: UtcDatetime


async def record(conn: psycopg.AsyncConnection[Any], entry: AuditEntry) -> int:
    """Insert the entry (in the caller's transaction) and return its id."""
    values = entry.model_dump()
    values["before"] = None if entry.before is None else Jsonb(entry.before)
    values["after"] = None if entry.after is None else Jsonb(entry.after)
    columns = list(values)
    async with conn.cursor() as cur:
        await cur.execute(
            f"INSERT INTO audit_log ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
            "RETURNING audit_id",
            list(values.values()),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def read_page(
    conn: psycopg.AsyncConnection[Any], filters: dict[str, Any], *, limit: int, offset: int
) -> tuple[list[AuditRow], int]:
    """Rows matching every given filter (column = value), newest first, and how many match in all."""
    where = " AND ".join(f"{column} = %s" for column in filters) or "true"
    params = list(filters.values())
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT count(*) AS n FROM audit_log WHERE {where}", params)
        total = (await cur.fetchone() or {"n": 0})["n"]
        await cur.execute(
            f"SELECT {', '.join(AuditRow.model_fields)} FROM audit_log WHERE {where} "
            "ORDER BY at DESC, audit_id DESC LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        rows = [AuditRow.model_validate(r) for r in await cur.fetchall()]
    return rows, total
