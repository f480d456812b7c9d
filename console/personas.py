"""Reply personas through the console (admin): list them, read one with its versions, write a new version.

Personas live in ai_personas / ai_persona_versions (migration 0011): the seven presets arrive from the
package (`worktool migrate up` / `worktool up`, source 'package'); `PUT /api/personas/{code}` writes a new
version from the current one with the given fields changed (source 'console'), or a new persona (name,
system_prompt and tone at least), and audits it (`persona.update`) in the same transaction. The live
dataflow applies each persona's current console version over the package and the business YAML when it
starts (docs/operations.md, "Personas and templates").
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, HTTPException, Path, Request, status
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from console import audit
from console.auth import AUTH_ERRORS, Principal, require
from console.common import Problem, client_addr, connection, line_text, pool_of
from console.permissions import Permission
from worktool.catalogue import EmojiPolicy, Persona, PersonaChange
from worktool.models import UtcDatetime

log = logging.getLogger(__name__)

PersonaCodePath = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="e.g. service")]
FIELDS = tuple(f for f in Persona.model_fields if f != "code")


class PersonaInput(PersonaChange):
    """The fields to change (unset: as in the current version) and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    note: line_text(500) | None = Field(default=None, description="Why: recorded on the version and audited.")

    @model_validator(mode="after")
    def _storable(self) -> PersonaInput:
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"{name}: NUL characters are not allowed")
        if not self.model_dump(exclude_none=True, exclude={"note"}):
            raise ValueError("nothing to change: give at least one persona field")
        return self


class PersonaVersion(BaseModel):
    version: int
    name: str
    role_type: str
    description: str
    system_prompt: str
    tone: str
    max_reply_chars: int
    emoji: EmojiPolicy
    temperature: float
    source: str = Field(description="package (shipped preset) or console.")
    note: str | None
    created_by: str
    created_at: UtcDatetime


class PersonaSummary(PersonaVersion):
    code: str
    is_preset: bool
    current_version: int


class PersonaDetail(PersonaSummary):
    versions: list[PersonaVersion] = Field(description="Every version, newest first.")


personas_router = APIRouter(prefix="/api/personas", tags=["personas"], responses=AUTH_ERRORS)
PersonaManager = Annotated[Principal, require(Permission.MANAGE_PERSONAS)]

_CURRENT = (
    "SELECT p.code, p.is_preset, p.current_version, v.version, "
    + ", ".join(f"v.{f}" for f in FIELDS)
    + ", v.source, v.note, v.created_by, v.created_at FROM ai_personas p "
    "JOIN ai_persona_versions v ON v.code = p.code AND v.version = p.current_version"
)
_VERSIONS = (
    "SELECT version, "
    + ", ".join(FIELDS)
    + ", source, note, created_by, created_at FROM ai_persona_versions WHERE code = %s ORDER BY version DESC"
)


async def _detail(
    conn: psycopg.AsyncConnection[Any], code: str, *, lock: bool = False
) -> PersonaDetail | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_CURRENT + " WHERE p.code = %s" + (" FOR UPDATE OF p" if lock else ""), (code,))
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(_VERSIONS, (code,))
        versions = [PersonaVersion(**r) for r in await cur.fetchall()]
    return PersonaDetail(**row, versions=versions)


@personas_router.get("")
async def list_personas(_: PersonaManager, request: Request) -> list[PersonaSummary]:
    """Every persona in its current version, by code."""
    async with (
        connection(pool_of(request), "cannot read ai_personas") as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(_CURRENT + " ORDER BY p.is_preset DESC, p.code")
        rows = await cur.fetchall()
    return [PersonaSummary(**r) for r in rows]


@personas_router.get("/{code}", responses={404: {"model": Problem, "description": "No such persona."}})
async def get_persona(code: PersonaCodePath, _: PersonaManager, request: Request) -> PersonaDetail:
    """A persona in its current version, with every version."""
    async with connection(pool_of(request), "cannot read ai_personas") as conn:
        found = await _detail(conn, code)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no persona {code}")
    return found


@personas_router.put(
    "/{code}",
    responses={
        422: {
            "model": Problem,
            "description": "A bad field, or a new persona without name/system_prompt/tone.",
        }
    },
)
async def put_persona(
    code: PersonaCodePath, body: PersonaInput, principal: PersonaManager, request: Request
) -> PersonaDetail:
    """A new version of the persona: its current version with the given fields changed (a new persona
    needs name, system_prompt and tone). Audited as persona.update."""
    change = PersonaChange(**body.model_dump(exclude={"note"}))
    async with connection(pool_of(request), "cannot write ai_personas") as conn, conn.transaction():
        before = await _detail(conn, code, lock=True)
        base = None if before is None else Persona(code=code, **before.model_dump(include=set(FIELDS)))
        try:
            persona = change.apply(code, base)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in x['loc'])}: {x['msg']}" for x in e.errors())
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems) from None
        version = 1 if before is None else max(v.version for v in before.versions) + 1
        values = {**persona.model_dump(), "version": version, "note": body.note, "by": principal.name}
        async with conn.cursor() as cur:
            if before is None:
                # Another admin creating it at the same moment: its row wins, this one is a conflict (409).
                await cur.execute(
                    "INSERT INTO ai_personas (code, name, role_type, is_preset, current_version) "
                    "VALUES (%(code)s, %(name)s, %(role_type)s, false, %(version)s) ON CONFLICT (code) DO NOTHING",
                    values,
                )
                if cur.rowcount != 1:
                    raise HTTPException(status.HTTP_409_CONFLICT, f"persona {code} was created meanwhile")
            else:
                await cur.execute(
                    "UPDATE ai_personas SET current_version = %(version)s, name = %(name)s, "
                    "role_type = %(role_type)s, updated_at = now() WHERE code = %(code)s",
                    values,
                )
            await cur.execute(
                f"INSERT INTO ai_persona_versions (code, version, {', '.join(FIELDS)}, source, note, created_by) "
                f"VALUES (%(code)s, %(version)s, {', '.join(f'%({f})s' for f in FIELDS)}, 'console', %(note)s, "
                "%(by)s)",
                values,
            )
        await audit.record(
            conn,
            audit.AuditEntry(
                actor=principal.name,
                actor_role=principal.role,
                action="persona.update",
                target_type="persona",
                target_id=code,
                client_addr=client_addr(request),
                before=None if before is None else before.model_dump(mode="json", exclude={"versions"}),
                after={**persona.model_dump(), "version": version, "note": body.note},
            ),
        )
        after = await _detail(conn, code)
    assert after is not None
    log.info("persona %s version %s by %s", code, version, principal.name)
    return after


PERSONA_ROUTERS = (personas_router,)
