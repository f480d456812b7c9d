"""`worktool users add|list|hash` and `worktool secrets-key`.

`add` stores an account in console_users (argon2 hash only) with an audit_log row, in one transaction.
The password is prompted for twice (hidden), or read from the first line of stdin with
--password-stdin; it is never an argument (it would land in the shell history and the process list).
`hash` prints an argon2 hash for the users file (WORKTOOL_USERS_FILE). Exit codes: 0 done; 1 refused
(the name exists) or a database that did not answer; 2 bad usage or missing settings.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import get_args

from worktool.settings import ConsoleRole, Settings

ROLES = get_args(ConsoleRole)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import typer

    # Hidden, asked twice; asked again while the two differ.
    return typer.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password", err=True)


def _checked_password(from_stdin: bool) -> str:
    from console.accounts import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS

    password = _read_password(from_stdin)
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


async def _add(database_url: str, username: str, role: ConsoleRole, password_hash: str, actor: str) -> None:
    import psycopg

    from console import accounts, audit
    from console.auth import local_client

    conn = await psycopg.AsyncConnection.connect(database_url, connect_timeout=5)
    async with conn, conn.transaction():
        created = await accounts.insert_account(conn, username, role, password_hash, created_by=actor)
        await audit.record(
            conn,
            audit.AuditEntry(
                actor=actor,
                actor_role=None,
                action="user.create",
                target_type="user",
                target_id=username,
                client_addr=local_client(),
                before=None,
                after={**created.audit_state(), "password_changed": True},
            ),
        )


def _usage_problem(settings: Settings, username: str, role: str) -> str | None:
    import re

    if not settings.database_url:
        return "DATABASE_URL not set: point it at the stack's database"
    if role not in ROLES:
        return f"--role must be one of {', '.join(ROLES)}"
    if not re.fullmatch(r"[\w.@-]{1,64}", username):
        return "a username has 1 to 64 letters, digits or . _ @ -"
    return None


def cli_users_add(username: str, role: str, password_stdin: bool, settings: Settings | None = None) -> int:
    import psycopg
    from rich.console import Console

    from console.accounts import AccountError, AccountExists, hash_password, load_users_file

    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    settings = settings or Settings()
    if problem := _usage_problem(settings, username, role):
        err.print(f"[red]{problem}[/red]")
        return 2
    assert settings.database_url
    try:
        if username in load_users_file(settings.users_file):
            err.print(f"[red]user {username} is defined in the users file {settings.users_file}[/red]")
            return 1
        password_hash = hash_password(_checked_password(password_stdin))
    except (AccountError, ValueError) as e:
        err.print(f"[red]{e}[/red]")
        return 2
    actor = f"cli:{getpass.getuser()}"
    try:
        asyncio.run(_add(settings.database_url, username, role, password_hash, actor))  # type: ignore[arg-type]
    except AccountExists as e:
        err.print(f"[red]refused:[/red] {e}")
        return 1
    except psycopg.Error as e:
        err.print(f"[red]database error:[/red] {e}")
        return 1
    out.print(f"user {username} ({role}) created")
    return 0


def cli_users_list(settings: Settings | None = None) -> int:
    import psycopg
    from rich.console import Console
    from rich.table import Table

    from console import accounts

    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    settings = settings or Settings()
    if not settings.database_url:
        err.print("[red]DATABASE_URL not set: point it at the stack's database[/red]")
        return 2
    database_url = settings.database_url

    async def read() -> list[accounts.StoredAccount]:
        async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
            return await accounts.list_accounts(conn)

    try:
        found = [*accounts.load_users_file(settings.users_file).values(), *asyncio.run(read())]
    except accounts.AccountError as e:
        err.print(f"[red]{e}[/red]")
        return 2
    except psycopg.Error as e:
        err.print(f"[red]database error:[/red] {e}")
        return 1
    table = Table("username", "role", "disabled", "source")
    for account in found:
        table.add_row(account.username, account.role, "yes" if account.disabled else "", account.source)
    out.print(table)
    return 0


def cli_users_hash(password_stdin: bool) -> int:
    from rich.console import Console

    from console.accounts import hash_password

    try:
        print(hash_password(_checked_password(password_stdin)))
    except ValueError as e:
        Console(stderr=True, highlight=False).print(f"[red]{e}[/red]")
        return 2
    return 0


def cli_secrets_key() -> int:
    from console.llm_keys import generate_secrets_key

    print(generate_secrets_key())
    return 0
