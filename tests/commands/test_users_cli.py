"""`worktool users add|list|hash` and `worktool secrets-key` against the real (embedded) PostgreSQL: an
argon2 hash and an audit row, never the password; refusals with exit codes 1 / 2."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner, Result

from commands.cli import app

pytestmark = pytest.mark.integration

PASSWORD = "值班-password-2026"


@pytest.fixture
def database_url(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


def run(database_url: str, *args: str, stdin: str | None = None, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, env={"DATABASE_URL": database_url, **env})


def said(result: Result) -> str:
    return " ".join(result.output.split())


def rows(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()


def test_add_with_password_stdin_stores_a_hash_and_an_audit_row(database_url: str) -> None:
    result = run(
        database_url,
        "users",
        "add",
        "客服主管-李",
        "--role",
        "supervisor",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )

    assert result.exit_code == 0, result.output
    assert "user 客服主管-李 (supervisor) created" in said(result)
    [(role, password_hash, disabled, created_by)] = rows(
        database_url, "SELECT role, password_hash, disabled, created_by FROM console_users"
    )
    assert role == "supervisor" and not disabled and created_by.startswith("cli:")
    assert password_hash.startswith("$argon2id$") and PasswordHasher().verify(password_hash, PASSWORD)
    [(actor, actor_role, action, target, client, before, after)] = rows(
        database_url, "SELECT actor, actor_role, action, target_id, client_addr, before, after FROM audit_log"
    )
    assert (actor, actor_role, action, target) == (created_by, None, "user.create", "客服主管-李")
    assert client == f"local:{socket.gethostname()}" and before is None
    assert after == {
        "username": "客服主管-李",
        "role": "supervisor",
        "disabled": False,
        "password_changed": True,
    }
    assert PASSWORD not in result.output


def test_add_prompts_twice_and_asks_again_while_they_differ(database_url: str) -> None:
    result = run(
        database_url,
        "users",
        "add",
        "admin",
        "--role",
        "admin",
        stdin=f"{PASSWORD}\nother-password-1\n{PASSWORD}\n{PASSWORD}\n",
    )

    assert result.exit_code == 0, result.output
    assert "do not match" in said(result)
    [(password_hash,)] = rows(database_url, "SELECT password_hash FROM console_users")
    assert PasswordHasher().verify(password_hash, PASSWORD)


def test_add_refuses_a_taken_name_a_bad_role_a_short_password(database_url: str, tmp_path: Path) -> None:
    first = run(database_url, "users", "add", "ops", "--role", "staff", "--password-stdin", stdin=PASSWORD)
    again = run(database_url, "users", "add", "ops", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    bad_role = run(database_url, "users", "add", "x", "--role", "root", "--password-stdin", stdin=PASSWORD)
    bad_name = run(database_url, "users", "add", "a b", "--role", "staff", "--password-stdin", stdin=PASSWORD)
    short = run(database_url, "users", "add", "y", "--role", "staff", "--password-stdin", stdin="short")
    no_db = run("", "users", "add", "z", "--role", "staff", "--password-stdin", stdin=PASSWORD)

    assert first.exit_code == 0
    assert again.exit_code == 1 and "user ops exists already" in said(again)
    assert [r.exit_code for r in (bad_role, bad_name, short, no_db)] == [2, 2, 2, 2]
    assert "--role must be one of admin, supervisor, staff, inspector" in said(bad_role)
    assert "DATABASE_URL not set" in said(no_db)
    assert rows(database_url, "SELECT username, role FROM console_users") == [("ops", "staff")]
    assert rows(database_url, "SELECT count(*) FROM audit_log") == [(1,)]


def test_hash_output_is_a_users_file_entry_that_list_shows(database_url: str, tmp_path: Path) -> None:
    hashed = run(database_url, "users", "hash", "--password-stdin", stdin=PASSWORD)
    assert hashed.exit_code == 0
    password_hash = hashed.stdout.strip()
    assert PasswordHasher().verify(password_hash, PASSWORD)
    users_file = tmp_path / "users.yaml"
    users_file.write_text(
        f"users:\n  - {{username: 质检, role: inspector, password_hash: '{password_hash}'}}\n"
    )
    run(database_url, "users", "add", "ops", "--role", "staff", "--password-stdin", stdin=PASSWORD)
    shadow = run(
        database_url, "users", "add", "质检", "--role", "admin", "--password-stdin", stdin=PASSWORD,
        WORKTOOL_USERS_FILE=str(users_file),
    )  # fmt: skip
    listed = run(database_url, "users", "list", WORKTOOL_USERS_FILE=str(users_file))

    assert shadow.exit_code == 1 and "defined in the users file" in said(shadow)
    assert listed.exit_code == 0
    table = [line.replace("│", " ").split() for line in listed.output.splitlines()]
    assert ["质检", "inspector", "file"] in table and ["ops", "staff", "database"] in table
    assert "$argon2" not in listed.output


def test_secrets_key_prints_32_random_bytes() -> None:
    first, second = (CliRunner().invoke(app, ["secrets-key"]).stdout.strip() for _ in range(2))
    assert len(base64.urlsafe_b64decode(first)) == 32 and first != second
