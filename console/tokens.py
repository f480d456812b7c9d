"""Access tokens: HS256 JWTs with `sub` (the account), `role`, `iat` and a short `exp`.

The secret is WORKTOOL_JWT_SECRET, which every instance behind one address must share. Without it (only
allowed on loopback, console/server.py) one is generated once into <data dir>/console/jwt_secret,
readable by its owner only, so tokens survive a restart of the console.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from console.permissions import ROLES, Role
from worktool.settings import Settings

ALGORITHM = "HS256"
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
REQUIRED_CLAIMS = ["exp", "iat", "sub", "role"]
LEEWAY_S = 5  # clock skew between instances


class TokenConfigError(ValueError):
    """A JWT secret the console cannot use."""


class InvalidToken(Exception):
    """A token that is not ours, was tampered with, or has expired; the message is safe to return."""


def secret_file(settings: Settings) -> Path:
    return settings.data_dir / "console" / "jwt_secret"


def _read_or_create_secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two consoles starting at once, one writes the secret and both read it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
    if path.stat().st_mode & 0o077:
        raise TokenConfigError(f"{path} is readable by others: chmod 600 it (or set WORKTOOL_JWT_SECRET)")
    secret = path.read_text(encoding="ascii").strip().encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise TokenConfigError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def resolve_secret(settings: Settings) -> bytes:
    """The signing secret: WORKTOOL_JWT_SECRET, else the generated file's."""
    configured = (settings.jwt_secret or "").strip()
    if configured:
        if len(configured.encode()) < MIN_SECRET_BYTES:
            raise TokenConfigError(f"WORKTOOL_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
        return configured.encode()
    return _read_or_create_secret(secret_file(settings))


@dataclass(frozen=True, slots=True)
class Claims:
    username: str
    role: Role
    issued_at: datetime
    expires_at: datetime


def issue(secret: bytes, username: str, role: Role, ttl_s: int, *, now: datetime | None = None) -> str:
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    claims = {"sub": username, "role": role, "iat": issued, "exp": issued + timedelta(seconds=ttl_s)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode(secret: bytes, token: str) -> Claims:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS}, leeway=LEEWAY_S
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the access token has expired: log in again") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("invalid access token") from None
    role, username = claims["role"], claims["sub"]
    if role not in ROLES or not isinstance(username, str) or not username:
        raise InvalidToken("invalid access token")
    return Claims(
        username=username,
        role=role,
        issued_at=datetime.fromtimestamp(claims["iat"], UTC),
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )
