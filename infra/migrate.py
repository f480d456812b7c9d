"""Database migrations: numbered SQL files in the `migrations` package, applied in order.

Files are `NNNN_<name>.up.sql` with a matching `NNNN_<name>.down.sql`. Applied migrations are recorded
in `migration_history` with the SHA-256 of the up file, so an applied file edited afterwards is reported
instead of silently diverging from the database. Each migration runs in its own transaction (its SQL
and its history row commit together, or neither does), and a session-level advisory lock makes a
second process wait instead of racing (two `worktool up` starting at once).

After migrating, `apply_up` copies the package's persona presets and template catalogue
(worktool/catalogue) into ai_personas / ai_persona_versions / ai_message_templates (migration 0011):
`sync_catalogue`, idempotent, under the same lock. SQL files hold the schema; the catalogue stays one
YAML file that the stream reads directly and the database mirrors, instead of 126 INSERTs kept in step.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from worktool.catalogue import Persona, preset_personas, shipped_catalogue

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# Any constant works, as long as every migrating process uses the same one. Derived from the name so it
# does not collide with advisory locks other code might take with small integers.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"worktool.migrate").digest()[:8], "big", signed=True)

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")

_HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS migration_history (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,  -- sha256 of the up file as applied
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """A migration cannot be applied or rolled back; the message says why and what to do."""


def _statements(sql: str) -> str:
    """The SQL without `--` comments, trailing spaces and blank lines (no `--` in our string literals)."""
    lines = (line.split("--", 1)[0].rstrip() for line in sql.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


# Databases migrated before checksums ignored comments recorded the sha256 of the whole file.
_FULL_TEXT_CHECKSUMS: dict[int, frozenset[str]] = {
    1: frozenset({"2a7eddd5459fbae4653286567abd23dd5ad1e66a33942296c4f18851c83cebf2"}),
    2: frozenset({"428231146027c247729e04b28f2be3621bfb2b5aceabe23f965d8757d16906f6"}),
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up_sql: str
    down_sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the statements: comments and blank lines are not part of it, so fixing a comment
        of an applied migration is not an edit; neither are CRLF line endings."""
        return hashlib.sha256(_statements(self.up_sql).encode()).hexdigest()

    def matches(self, recorded: str) -> bool:
        return recorded == self.checksum or recorded in _FULL_TEXT_CHECKSUMS.get(self.version, ())

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class MigrationState:
    """One row of `status`: a migration known from the files, the database, or both."""

    version: int
    name: str
    applied: bool
    applied_at: datetime | None
    # "pending", "applied", "checksum mismatch" (file edited after it was applied), or
    # "missing file" (applied by newer code than this).
    state: str


# ---------------------------------------------------------------------------------------------
# Files


def load_migrations(source: Traversable | Path | None = None) -> list[Migration]:
    """Read the migration files (default: the `migrations` package data), checking that versions are
    unique and contiguous from 1 and that every up file has its down file."""
    root = source if source is not None else resources.files("migrations")
    found: dict[int, dict[str, tuple[str, str]]] = {}
    for entry in root.iterdir():
        m = _FILE.match(entry.name)
        if not m:
            continue
        version = int(m["version"])
        by_direction = found.setdefault(version, {})
        if m["direction"] in by_direction:
            raise MigrationError(f"two {m['direction']} files for version {version:04d}")
        by_direction[m["direction"]] = (m["name"], entry.read_text(encoding="utf-8"))

    migrations = []
    for version in sorted(found):
        files = found[version]
        if set(files) != {"up", "down"}:
            missing = ({"up", "down"} - set(files)).pop()
            raise MigrationError(f"migration {version:04d} has no {missing} file")
        (up_name, up_sql), (down_name, down_sql) = files["up"], files["down"]
        if up_name != down_name:
            raise MigrationError(f"migration {version:04d}: up is '{up_name}' but down is '{down_name}'")
        migrations.append(Migration(version, up_name, up_sql, down_sql))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must run 1, 2, 3, ... without gaps; found {versions}")
    return migrations


# ---------------------------------------------------------------------------------------------
# Database


def _connect(database_url: str) -> psycopg.Connection:
    # autocommit: every transaction is an explicit `with conn.transaction()`, and the advisory lock is
    # held by the session, outside of them.
    return psycopg.connect(database_url, autocommit=True, connect_timeout=10)


def _acquire_lock(conn: psycopg.Connection, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
            return
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"another process has been migrating this database for over {timeout_s:g} s "
                f"(advisory lock {LOCK_KEY} is held); try again when it is done"
            )
        time.sleep(0.1)


def _history(conn: psycopg.Connection) -> dict[int, tuple[str, str, datetime]]:
    """version -> (name, checksum, applied_at); empty when the table does not exist yet."""
    if conn.execute("SELECT to_regclass('migration_history')").fetchone()[0] is None:
        return {}
    try:
        rows = conn.execute("SELECT version, name, checksum, applied_at FROM migration_history").fetchall()
    except (psycopg.errors.UndefinedColumn, psycopg.errors.DatatypeMismatch) as e:
        # The old Node system kept a migration_history of its own (version text, description, ...).
        raise MigrationError(
            f"this database has a migration_history table that is not ours ({e}); "
            "is DATABASE_URL pointing at the old system's database? Use a new database."
        ) from e
    return {int(v): (n, c, at) for v, n, c, at in rows}


def _verify(migrations: list[Migration], history: dict[int, tuple[str, str, datetime]]) -> None:
    """Refuse to go on when the applied migrations and the files disagree."""
    known = {m.version: m for m in migrations}
    unknown = sorted(set(history) - set(known))
    if unknown:
        raise MigrationError(
            "the database has migrations this code does not know: "
            + ", ".join(f"{v:04d}_{history[v][0]}" for v in unknown)
            + " (it was migrated by a newer version; upgrade this code)"
        )
    edited = [
        known[v].label for v, (_, checksum, _) in sorted(history.items()) if not known[v].matches(checksum)
    ]
    if edited:
        raise MigrationError(
            "checksum mismatch: applied migration file(s) changed since they were applied: "
            + ", ".join(edited)
            + ". Never edit an applied migration; restore the file and add a new migration instead."
        )


@contextmanager
def _locked(database_url: str, lock_timeout_s: float) -> Iterator[psycopg.Connection]:
    """A connection holding the migration lock, with migration_history created."""
    with _connect(database_url) as conn:
        _acquire_lock(conn, lock_timeout_s)
        try:
            # Under the lock: two concurrent CREATE TABLE IF NOT EXISTS can still collide.
            conn.execute(_HISTORY_DDL)
            yield conn
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def apply_up(
    database_url: str,
    target: int | None = None,
    *,
    source: Traversable | Path | None = None,
    lock_timeout_s: float = 60.0,
) -> list[Migration]:
    """Apply pending migrations in order, up to and including `target` (default: all).
    Returns the migrations applied (empty when the database is up to date)."""
    migrations = load_migrations(source)
    if target is not None and target not in {m.version for m in migrations}:
        raise MigrationError(f"no migration with version {target}")
    applied: list[Migration] = []
    with _locked(database_url, lock_timeout_s) as conn:
        history = _history(conn)
        _verify(migrations, history)
        for m in migrations:
            if m.version in history or (target is not None and m.version > target):
                continue
            try:
                with conn.transaction():
                    conn.execute(m.up_sql)
                    conn.execute(
                        "INSERT INTO migration_history (version, name, checksum) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
            except psycopg.Error as e:
                raise MigrationError(f"migration {m.label} failed and was rolled back: {e}") from e
            applied.append(m)
        sync_catalogue(conn)
    return applied


_PERSONA_FIELDS = tuple(f for f in Persona.model_fields if f != "code")


def sync_catalogue(conn: psycopg.Connection) -> dict[str, int]:
    """Copy the package's personas and templates into the database (when migration 0011 is applied):
    a preset not there gets version 1; a preset whose package text changed gets a new 'package' version
    (current unless a console version is newer); templates are upserted by id (rewritten only when their
    package entry changed), and those gone from the package marked inactive. Idempotent; returns counts
    of what it wrote."""
    if conn.execute("SELECT to_regclass('ai_message_templates')").fetchone() == (None,):
        return {}
    counts = {"persona_versions": 0, "templates": 0, "retired": 0}
    catalogue = shipped_catalogue()
    with conn.transaction():
        for p in preset_personas().values():
            values = p.model_dump()
            latest = conn.execute(
                f"SELECT version, {', '.join(_PERSONA_FIELDS)} FROM ai_persona_versions "
                "WHERE code = %s AND source = 'package' ORDER BY version DESC LIMIT 1",
                (p.code,),
            ).fetchone()
            if latest is not None and dict(zip(_PERSONA_FIELDS, latest[1:], strict=True)) == {
                f: values[f] for f in _PERSONA_FIELDS
            }:
                continue
            top = conn.execute(
                "SELECT max(version), bool_or(source = 'console') FROM ai_persona_versions WHERE code = %s",
                (p.code,),
            ).fetchone()
            version = (top[0] or 0) + 1 if top else 1
            conn.execute(
                """INSERT INTO ai_personas (code, name, role_type, is_preset, current_version)
                   VALUES (%(code)s, %(name)s, %(role_type)s, true, %(version)s)
                   ON CONFLICT (code) DO NOTHING""",
                {**values, "version": version},
            )
            conn.execute(
                f"INSERT INTO ai_persona_versions (code, version, {', '.join(_PERSONA_FIELDS)}, source, created_by) "
                f"VALUES (%(code)s, %(version)s, {', '.join(f'%({f})s' for f in _PERSONA_FIELDS)}, 'package', "
                "'package')",
                {**values, "version": version},
            )
            if not (top and top[1]):  # no console version: the package's is current
                conn.execute(
                    "UPDATE ai_personas SET current_version = %s, name = %s, role_type = %s, updated_at = now() "
                    "WHERE code = %s",
                    (version, p.name, p.role_type, p.code),
                )
            counts["persona_versions"] += 1
        for t in catalogue.templates:
            entry = t.model_dump()
            checksum = hashlib.sha256(repr(sorted(entry.items())).encode()).hexdigest()
            written = conn.execute(
                """INSERT INTO ai_message_templates (template_id, category, category_name, name, template,
                       variables, personas, message_types, scenarios, shifts, is_active, checksum)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true, %s)
                   ON CONFLICT (template_id) DO UPDATE SET category = EXCLUDED.category,
                       category_name = EXCLUDED.category_name, name = EXCLUDED.name,
                       template = EXCLUDED.template, variables = EXCLUDED.variables,
                       personas = EXCLUDED.personas, message_types = EXCLUDED.message_types,
                       scenarios = EXCLUDED.scenarios, shifts = EXCLUDED.shifts, is_active = true,
                       checksum = EXCLUDED.checksum, updated_at = now()
                   WHERE ai_message_templates.checksum <> EXCLUDED.checksum OR NOT ai_message_templates.is_active""",
                (t.id, catalogue.category_code(t.category), catalogue.category_name(t.category), t.name, t.text,
                 t.variables, t.personas, t.message_types, t.scenarios, list(t.shifts), checksum),
            )  # fmt: skip
            counts["templates"] += written.rowcount
        retired = conn.execute(
            "UPDATE ai_message_templates SET is_active = false, updated_at = now() "
            "WHERE is_active AND NOT (template_id = ANY(%s))",
            ([t.id for t in catalogue.templates],),
        )
        counts["retired"] = retired.rowcount
    return counts


def latest_console_personas(database_url: str) -> dict[str, Persona]:
    """Each persona's current version when it was made through the console (what the live dataflow
    applies over the package and the business YAML); empty before migration 0011."""
    with _connect(database_url) as conn:
        if conn.execute("SELECT to_regclass('ai_persona_versions')").fetchone() == (None,):
            return {}
        rows = conn.execute(
            f"SELECT v.code, {', '.join('v.' + f for f in _PERSONA_FIELDS)} FROM ai_personas p "
            "JOIN ai_persona_versions v ON v.code = p.code AND v.version = p.current_version "
            "WHERE v.source = 'console'"
        ).fetchall()
    return {
        row[0]: Persona.model_validate(dict(zip(("code", *_PERSONA_FIELDS), row, strict=True)))
        for row in rows
    }


def apply_down(
    database_url: str,
    steps: int = 1,
    *,
    source: Traversable | Path | None = None,
    lock_timeout_s: float = 60.0,
) -> list[Migration]:
    """Roll back the newest `steps` applied migrations, newest first. Returns those rolled back."""
    if steps < 0:
        raise MigrationError("steps must be 0 or more")
    migrations = {m.version: m for m in load_migrations(source)}
    rolled_back: list[Migration] = []
    with _locked(database_url, lock_timeout_s) as conn:
        history = _history(conn)
        _verify(list(migrations.values()), history)
        for version in sorted(history, reverse=True)[:steps]:
            m = migrations[version]
            try:
                with conn.transaction():
                    conn.execute(m.down_sql)
                    conn.execute("DELETE FROM migration_history WHERE version = %s", (m.version,))
            except psycopg.Error as e:
                raise MigrationError(f"rollback of {m.label} failed and was undone: {e}") from e
            rolled_back.append(m)
    return rolled_back


def status(database_url: str, *, source: Traversable | Path | None = None) -> list[MigrationState]:
    """Every migration known from the files or the database, oldest first. Read-only (no lock)."""
    migrations = {m.version: m for m in load_migrations(source)}
    with _connect(database_url) as conn:
        history = _history(conn)
    states = []
    for version in sorted(set(migrations) | set(history)):
        m, h = migrations.get(version), history.get(version)
        if h is None:
            state = "pending"
        elif m is None:
            state = "missing file"
        elif not m.matches(h[1]):
            state = "checksum mismatch"
        else:
            state = "applied"
        states.append(
            MigrationState(
                version=version,
                name=m.name if m else h[0],
                applied=h is not None,
                applied_at=h[2] if h else None,
                state=state,
            )
        )
    return states


# ---------------------------------------------------------------------------------------------
# CLI hooks (wired in worktool/cli.py). Each returns the process exit code.


def _database_url() -> str | None:
    from worktool.settings import get_settings

    return get_settings().database_url


def _run(action: Callable[[str, Console], None]) -> int:
    from rich.console import Console

    out, err = Console(), Console(stderr=True)
    url = _database_url()
    if not url:
        err.print(
            "[red]DATABASE_URL is not set.[/red] Point it at the PostgreSQL database to migrate, e.g. "
            "DATABASE_URL=postgresql://user@host:5432/worktool (`worktool up` migrates its embedded "
            "database by itself)."
        )
        return 2
    try:
        action(url, out)
    except MigrationError as e:
        err.print(f"[red]migration error:[/red] {e}", highlight=False)
        return 1
    except psycopg.OperationalError as e:
        err.print(f"[red]cannot reach the database:[/red] {e}", highlight=False)
        return 1
    except psycopg.Error as e:
        err.print(f"[red]database error:[/red] {e}", highlight=False)
        return 1
    return 0


def _table(title: str, migrations: list[Migration]) -> Table:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("version", justify="right")
    table.add_column("name")
    for m in migrations:
        table.add_row(f"{m.version:04d}", m.name)
    return table


def _run_step(step: Callable[[str], list[Migration]], title: str, nothing: str) -> int:
    """Run `step` (apply or roll back) and print what it did under `title`, else `nothing`."""

    def action(url: str, out: Console) -> None:
        done = step(url)
        out.print(_table(title, done) if done else nothing)

    return _run(action)


def cli_up(target: int | None) -> int:
    return _run_step(
        lambda url: apply_up(url, target), "Applied", "Nothing to apply: the database is up to date."
    )


def cli_down(steps: int) -> int:
    return _run_step(lambda url: apply_down(url, steps), "Rolled back", "Nothing to roll back.")


def cli_status() -> int:
    from rich.table import Table

    styles = {"applied": "green", "pending": "yellow", "checksum mismatch": "red", "missing file": "red"}

    def action(url: str, out: Console) -> None:
        table = Table(title="Migrations")
        for col in ("version", "name", "state", "applied at"):
            table.add_column(col, justify="right" if col == "version" else "left")
        for s in status(url):
            style = styles[s.state]
            applied_at = s.applied_at.isoformat(timespec="seconds") if s.applied_at else ""
            table.add_row(f"{s.version:04d}", s.name, f"[{style}]{s.state}[/{style}]", applied_at)
        out.print(table)

    return _run(action)
