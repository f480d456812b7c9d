"""LLM provider keys set through the console, encrypted at rest.

The API stores a key (PUT /api/llm/keys/{provider}) and lists providers with a fingerprint (a sha256
prefix of the key, which an operator can compare with `printf %s "$KEY" | sha256sum`); it never returns or
logs a key, and the audit log records the fingerprint only. Without WORKTOOL_SECRETS_KEY nothing is stored
(503).

The encryption lives in infra/llm_keys.py (AES-256-GCM with the 32-byte WORKTOOL_SECRETS_KEY, the
provider's name as associated data), shared with the reading side: the dataflow's LLM client
(classifiers/llm/keys.py) uses the stored key of WORKTOOL_LLM_PROVIDER when WORKTOOL_LLM_API_KEY is not
set, re-reads it every WORKTOOL_LLM_KEY_REFRESH_S seconds and at once after a 401/403, so a key set or
replaced here applies to the next calls without a restart (docs/operations.md, "LLM provider keys").
The names below are re-exported from infra/llm_keys.py for the console's callers.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from console import audit
from console.auth import AUTH_ERRORS, Principal, require
from console.common import Problem, client_addr, connection, line_text, pool_of
from console.permissions import Permission
from infra.llm_keys import (
    NONCE_BYTES,
    SecretsKeyError,
    UndecryptableKey,
    fingerprint,
    generate_secrets_key,
    key_id,
    open_key,
    parse_secrets_key,
    seal,
    unseal,
)
from worktool.models import UtcDatetime

__all__ = [
    "NONCE_BYTES",
    "SecretsKeyError",
    "UndecryptableKey",
    "fingerprint",
    "generate_secrets_key",
    "key_id",
    "llm_router",
    "open_key",
    "parse_secrets_key",
    "seal",
    "unseal",
]

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 4096
ApiKey = line_text(MAX_KEY_CHARS, min_length=8, strip=True)
ProviderName = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$", description="e.g. openai, dashscope")
]


# ---------------------------------------------------------------------------------------------
# API


class KeyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: ApiKey = Field(
        repr=False, description="The provider's API key; stored encrypted, never shown again."
    )


class StoredKey(BaseModel):
    provider: str
    fingerprint: str = Field(description="sha256:<first 16 hex digits of the key's sha256>.")
    updated_by: str
    updated_at: UtcDatetime


llm_router = APIRouter(prefix="/api/llm/keys", tags=["llm"], responses=AUTH_ERRORS)
KeyManager = Annotated[Principal, require(Permission.MANAGE_LLM_KEYS)]


@llm_router.get("")
async def list_keys(_: KeyManager, request: Request) -> list[StoredKey]:
    """The providers with a stored key, each with its fingerprint (never the key)."""
    async with (
        connection(pool_of(request), "cannot read llm_provider_keys") as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            "SELECT provider, fingerprint, updated_by, updated_at FROM llm_provider_keys ORDER BY provider"
        )
        rows = await cur.fetchall()
    return [StoredKey(**r) for r in rows]


@llm_router.put(
    "/{provider}",
    responses={503: {"model": Problem, "description": "WORKTOOL_SECRETS_KEY is not set, or the database."}},
)
async def set_key(
    provider: ProviderName, body: KeyInput, principal: KeyManager, request: Request
) -> StoredKey:
    """Store (or replace) a provider's key, encrypted; audited with its fingerprint only."""
    try:
        secrets_key = parse_secrets_key(request.app.state.settings.secrets_key)
    except SecretsKeyError as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e)) from None
    sealed = seal(secrets_key, provider, body.api_key)
    key_fingerprint = fingerprint(body.api_key)
    async with connection(pool_of(request), "cannot write llm_provider_keys") as conn, conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT fingerprint, key_id FROM llm_provider_keys WHERE provider = %s FOR UPDATE",
                (provider,),
            )
            before = await cur.fetchone()
            await cur.execute(
                """INSERT INTO llm_provider_keys (provider, ciphertext, key_id, fingerprint, updated_by)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (provider) DO UPDATE SET ciphertext = EXCLUDED.ciphertext,
                       key_id = EXCLUDED.key_id, fingerprint = EXCLUDED.fingerprint,
                       updated_by = EXCLUDED.updated_by
                   RETURNING provider, fingerprint, updated_by, updated_at""",
                (provider, sealed, key_id(secrets_key), key_fingerprint, principal.name),
            )
            row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            audit.AuditEntry(
                actor=principal.name,
                actor_role=principal.role,
                action="llm_key.set",
                target_type="llm_key",
                target_id=provider,
                client_addr=client_addr(request),
                before=None if before is None else dict(before),
                after={"fingerprint": key_fingerprint, "key_id": key_id(secrets_key)},
            ),
        )
    log.info("LLM key of %s set by %s (%s)", provider, principal.name, key_fingerprint)
    return StoredKey(**row)
