"""The LLM provider keys stored through the console: their encryption and their reading side.

AES-256-GCM with the 32-byte key WORKTOOL_SECRETS_KEY (urlsafe base64) and the provider's name as
associated data, so a row's ciphertext (table llm_provider_keys: nonce + ciphertext + tag) decrypts only
as that provider's key and only with that secrets key. A key is named by its fingerprint (a sha256 prefix,
which an operator can compare with `printf %s "$KEY" | sha256sum`), never shown.

The console writes the rows (console/llm_keys.py); the LLM client reads them (classifiers/llm/keys.py),
both through this module, which does no I/O of its own beyond the query `open_key` runs on a connection
it is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


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
