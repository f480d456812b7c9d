"""Login users for the parts' database roles (migration 0006 creates the NOLOGIN group roles).

Each part that uses the database connects as a login user that is a member of its group role only:
gateway -> worktool_gateway (SELECT 1 for /healthz), dataflow -> worktool_dataflow (the projection
tables), console -> worktool_console (reads; accounts, keys, audit inserts). The dispatcher has none.

- `worktool up` with its embedded PostgreSQL: `provision_embedded` creates `worktool_<part>_login` with a
  random password kept 0600 in `<data dir>/db-roles.json` and returns each part's URL.
- An external database: the operator gives each part its URL (WORKTOOL_DATABASE_URL_GATEWAY, ..._DATAFLOW,
  ..._CONSOLE); `worktool migrate logins` (with the owner's DATABASE_URL) creates or updates the login
  user each of those URLs names, with its password, and grants it the part's group.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

# The parts that connect to the database, and their group roles (migration 0006).
PART_ROLES: dict[str, str] = {
    "gateway": "worktool_gateway",
    "dataflow": "worktool_dataflow",
    "console": "worktool_console",
}
CREDENTIALS_FILE = "db-roles.json"


def login_name(part: str) -> str:
    return f"{PART_ROLES[part]}_login"


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` (a postgresql:// URL) with its user and password replaced."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def ensure_login(owner_url: str, part: str, user: str, password: str) -> None:
    """Create (or update the password of) login user `user`, a member of `part`'s group role only."""
    group = PART_ROLES[part]
    if user in PART_ROLES.values():
        raise ValueError(f"{user} is a group role; give the part a login user of its own")
    with psycopg.connect(owner_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(
                verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD {}"
            ).format(sql.Identifier(user), sql.Literal(password))
        )
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(user)))


def provision_embedded(owner_url: str, data_dir: Path) -> dict[str, str]:
    """Login users with random passwords for every part (kept 0600 in the data dir, reused on the next
    start); returns part -> URL."""
    path = data_dir / CREDENTIALS_FILE
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    passwords = {part: stored.get(part) or secrets.token_urlsafe(24) for part in PART_ROLES}
    if passwords != stored:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(passwords) + "\n")
        tmp.replace(path)
    path.chmod(0o600)
    urls = {}
    for part, password in passwords.items():
        ensure_login(owner_url, part, login_name(part), password)
        urls[part] = with_credentials(owner_url, login_name(part), password)
    return urls


def provision_from_urls(owner_url: str, part_urls: dict[str, str]) -> list[str]:
    """Create or update the login user each part's URL names, with the URL's password; returns the
    users. A URL without a user or password is refused (ValueError)."""
    done = []
    for part, url in part_urls.items():
        parts = urlsplit(url)
        if not parts.username or not parts.password:
            raise ValueError(f"the {part}'s database URL names no user and password")
        user = unquote(parts.username)
        ensure_login(owner_url, part, user, unquote(parts.password))
        done.append(user)
    return done


def cli_logins() -> int:
    """`worktool migrate logins`; the exit code."""
    import sys

    from worktool.settings import get_settings

    settings = get_settings()
    if not settings.database_url:
        print("DATABASE_URL (the owner's, as for migrations) is not set", file=sys.stderr)
        return 2
    given = {part: getattr(settings, f"database_url_{part}") for part in PART_ROLES}
    missing = [f"WORKTOOL_DATABASE_URL_{part.upper()}" for part, url in given.items() if not url]
    if missing:
        print(f"not set: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        users = provision_from_urls(settings.database_url, {p: u for p, u in given.items() if u})
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    except psycopg.Error as e:
        print(f"database error: {e}", file=sys.stderr)
        return 1
    print("database logins ready: " + ", ".join(users))
    return 0


__all__ = [
    "cli_logins",
    "PART_ROLES",
    "ensure_login",
    "login_name",
    "provision_embedded",
    "provision_from_urls",
    "with_credentials",
]
