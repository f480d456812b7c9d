"""Console accounts: argon2 password hashes, the users file, the console_users table.

Two sources: the users file (WORKTOOL_USERS_FILE, YAML `users: [{username, role, password_hash}]`, read
once when the app is created; configuration, so the API cannot change it) and the `console_users`
table (`worktool users add`, or an admin through the API). A name may live in one source only; the file
is looked up first. Only hashes are ever stored or read: a password exists in memory while it is
hashed or verified, and nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from console.common import line_text
from console.permissions import Role
from worktool.models import UtcDatetime

# Letters (any script: staff go by Chinese names), digits and . _ @ -.
Username = Annotated[str, StringConstraints(pattern=r"^[\w.@-]{1,64}$")]
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024  # argon2 hashes any length; this only bounds the work per request
Password = line_text(MAX_PASSWORD_CHARS, min_length=MIN_PASSWORD_CHARS)
ARGON2_PREFIX = "$argon2"


class AccountError(ValueError):
    """An account that cannot be created, changed or loaded; the message says why."""


class AccountExists(AccountError):
    pass


# ---------------------------------------------------------------------------------------------
# Hashing


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)


def hash_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return _hasher().hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher().hash("not a password of anyone")


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (unknown user) a dummy is verified, so the answer takes
    as long as for a known user and does not tell which names exist."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------------------------------------
# Accounts


class Account(BaseModel):
    """An account as the API shows it (never with its hash)."""

    model_config = ConfigDict(frozen=True)

    username: str
    role: Role
    disabled: bool = False
    source: Literal["file", "database"]
    created_by: str | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


class StoredAccount(Account):
    password_hash: str = Field(repr=False, exclude=True)

    def public(self) -> Account:
        return Account.model_validate(self.model_dump())

    def audit_state(self) -> dict[str, Any]:
        """What the audit log keeps of the account: no hash, no password."""
        return {"username": self.username, "role": self.role, "disabled": self.disabled}


class _UsersFileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    role: Role
    password_hash: Annotated[str, StringConstraints(pattern=r"^\$argon2(id|i|d)\$")] = Field(repr=False)
    disabled: bool = False


class _UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[_UsersFileEntry] = Field(default_factory=list)


def load_users_file(path: Path | None) -> dict[str, StoredAccount]:
    """The accounts of the users file by name (none without a file). Errors name the bad entry, never
    a hash."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise AccountError(f"cannot read the users file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise AccountError(f"the users file {path} is not valid YAML: {e}") from e
    try:
        parsed = _UsersFile.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise AccountError(f"invalid users file {path}: {problems}") from None
    accounts: dict[str, StoredAccount] = {}
    for entry in parsed.users:
        if entry.username in accounts:
            raise AccountError(f"the users file {path} names {entry.username!r} twice")
        accounts[entry.username] = StoredAccount(**entry.model_dump(), source="file")
    return accounts


_COLUMNS = "username, role, password_hash, disabled, created_by, created_at, updated_at"


def _stored(row: Mapping[str, Any]) -> StoredAccount:
    return StoredAccount(**row, source="database")


async def fetch_account(conn: psycopg.AsyncConnection[Any], username: str) -> StoredAccount | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM console_users WHERE username = %s", (username,))
        row = await cur.fetchone()
    return None if row is None else _stored(row)


async def list_accounts(conn: psycopg.AsyncConnection[Any]) -> list[StoredAccount]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM console_users ORDER BY username")
        return [_stored(row) for row in await cur.fetchall()]


async def insert_account(
    conn: psycopg.AsyncConnection[Any], username: str, role: Role, password_hash: str, *, created_by: str
) -> StoredAccount:
    try:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""INSERT INTO console_users (username, role, password_hash, created_by)
                    VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}""",
                (username, role, password_hash, created_by),
            )
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        raise AccountExists(f"user {username} exists already") from None
    assert row is not None
    return _stored(row)


async def update_account(
    conn: psycopg.AsyncConnection[Any],
    username: str,
    *,
    role: Role | None = None,
    password_hash: str | None = None,
    disabled: bool | None = None,
) -> StoredAccount | None:
    """Change the given fields; None if there is no such account in the table."""
    changes = {
        k: v
        for k, v in (("role", role), ("password_hash", password_hash), ("disabled", disabled))
        if v is not None
    }
    if not changes:
        return await fetch_account(conn, username)
    assignments = ", ".join(f"{column} = %s" for column in changes)  # names from the literal above
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"UPDATE console_users SET {assignments} WHERE username = %s RETURNING {_COLUMNS}",
            (*changes.values(), username),
        )
        row = await cur.fetchone()
    return None if row is None else _stored(row)


class AccountDirectory:
    """Looks an account up in the users file, then in console_users."""

    def __init__(self, file_accounts: dict[str, StoredAccount]):
        self.file_accounts = file_accounts

    async def lookup(self, conn: psycopg.AsyncConnection[Any], username: str) -> StoredAccount | None:
        if username in self.file_accounts:
            return self.file_accounts[username]
        return await fetch_account(conn, username)
