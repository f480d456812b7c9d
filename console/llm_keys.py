"""LLM provider keys set through the console, encrypted at rest.

AES-256-GCM with the 32-byte key WORKTOOL_SECRETS_KEY (urlsafe base64) and the provider's name as
associated data, so a row's ciphertext decrypts only as that provider's key and only with that
secrets key. The API stores a key and lists providers with a fingerprint (a sha256 prefix of the key,
which an operator can compare with `printf %s "$KEY" | sha256sum`); it never returns or logs a key, and
the audit log records the fingerprint only. Without WORKTOOL_SECRETS_KEY nothing is stored (503).

`open_key` is the reading side for whoever calls the provider (the dataflow does not yet).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from typing import Annotated, Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, HTTPException, Path, Request, status
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from console import audit
from console.auth import AUTH_ERRORS, Principal, require
from console.common import Problem, client_addr, connection, line_text, pool_of
from console.permissions import Permission
from worktool.models import UtcDatetime

log = logging.getLogger(__name__)

NONCE_BYTES = 12
MAX_KEY_CHARS = 4096
ApiKey = line_text(MAX_KEY_CHARS, min_length=8, strip=True)
ProviderName = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$", description="e.g. openai, dashscope")
]


class SecretsKeyError(ValueError):
    """WORKTOOL_SECRETS_KEY is missing or malformed (the message never shows it)."""


class UndecryptableKey(Exception):
    """The stored ciphertext does not open with this secrets key (another key, or tampered)."""


def parse_secrets_key(value: str | None) -> bytes:
    if not value or not value.strip():
        raise SecretsKeyError("WORKTOOL_SECRETS_KEY is not set: no LLM key can be stored")
    try:
        key = base64.urlsafe_b64decode(value.strip().encode())
    except (binascii.Error, ValueError):
        raise SecretsKeyError("WORKTOOL_SECRETS_KEY is not urlsafe base64") from None
    if len(key) != 32:
        raise SecretsKeyError("WORKTOOL_SECRETS_KEY must encode exactly 32 bytes")
    return key


def generate_secrets_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def key_id(secrets_key: bytes) -> str:
    """Names the secrets key without revealing it (stored beside each ciphertext)."""
    return hashlib.sha256(b"worktool-secrets-key-id:" + secrets_key).hexdigest()[:16]


def fingerprint(api_key: str) -> str:
    return "sha256:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def _aad(provider: str) -> bytes:
    return f"worktool-llm-key:{provider}".encode()


def seal(secrets_key: bytes, provider: str, api_key: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(secrets_key).encrypt(nonce, api_key.encode(), _aad(provider))


def unseal(secrets_key: bytes, provider: str, sealed: bytes) -> str:
    try:
        plain = AESGCM(secrets_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(provider))
    except InvalidTag:
        raise UndecryptableKey(f"the stored {provider} key does not decrypt with this secrets key") from None
    return plain.decode()


async def open_key(conn: psycopg.AsyncConnection[Any], secrets_key: bytes, provider: str) -> str | None:
    """The provider's key in clear, or None if none is stored; UndecryptableKey with another key."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT ciphertext FROM llm_provider_keys WHERE provider = %s", (provider,))
        row = await cur.fetchone()
    return None if row is None else unseal(secrets_key, provider, bytes(row[0]))


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
