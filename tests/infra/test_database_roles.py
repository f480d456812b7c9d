"""Least privilege in the database (migration 0006): each part's login, on a real migrated PostgreSQL, may
do what that part does and nothing more. The gateway only connects (SELECT 1), the dataflow writes the
projection (the whole sample day through the real sink) and reads the stored LLM keys (0013: it uses them
when WORKTOOL_LLM_API_KEY is not set) but cannot see accounts or the audit log nor write keys, the console
reads everything and writes accounts and keys but may only append to the audit log."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.errors import InsufficientPrivilege

from dataflows.replay import replay_archive
from infra.db_roles import PART_ROLES, ensure_login, login_name, provision_embedded, with_credentials
from infra.migrate import apply_down, load_migrations
from sinks.postgres import write_events
from worktool.events import parse_event
from worktool.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "commands" / "data" / "sample_day.jsonl"
UNTIL = datetime(2025, 3, 20, tzinfo=UTC)  # after the sample day: every timer fires

# What each part may do on every table of the schema. A migration that adds a table must decide (and
# grant) what each part may do with it, and add it here: this test fails on a table it does not list.
READ, WRITE = {"SELECT"}, {"SELECT", "INSERT", "UPDATE"}
PROJECTION = {
    "robots", "sessions", "session_robots", "message_types", "session_messages", "alert_history",
    "robot_commands", "after_sales_tasks", "ai_io_logs", "desk_staff", "after_sales_daily_reports",
    "customer_profiles",
}  # fmt: skip
EXPECTED: dict[str, dict[str, set[str]]] = {
    "gateway": {},
    "dataflow": {
        **{table: WRITE for table in PROJECTION},
        "ai_personas": READ,
        "ai_persona_versions": READ,
        "kb_passages": READ,  # the reply path reads the knowledge base
        "llm_provider_keys": READ,  # 0013: the LLM client reads the stored keys
    },
    "console": {
        **{table: READ for table in PROJECTION | {"staff_activities", "ai_message_templates", "kb_passages"}},
        "ai_personas": WRITE,
        "ai_persona_versions": {"SELECT", "INSERT"},
        "console_users": WRITE,
        "llm_provider_keys": WRITE,
        "audit_log": {"SELECT", "INSERT"},
    },
}
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@pytest.fixture(scope="module")
def owner_url(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


@pytest.fixture(scope="module")
def part_urls(owner_url: str) -> dict[str, str]:
    """A login of each part's role (unique names: roles belong to the whole test server)."""
    urls = {}
    for part in PART_ROLES:
        user, password = f"t_{uuid.uuid4().hex[:8]}_{part}", uuid.uuid4().hex
        ensure_login(owner_url, part, user, password)
        urls[part] = with_credentials(owner_url, user, password)
    return urls


@pytest.fixture
def as_part(part_urls: dict[str, str]) -> Iterator[Callable[[str], psycopg.Connection]]:
    opened: list[psycopg.Connection] = []

    def connect(part: str) -> psycopg.Connection:
        conn = psycopg.connect(part_urls[part], autocommit=True, connect_timeout=10)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def denied(conn: psycopg.Connection, statement: str, params: tuple = ()) -> bool:
    """True when PostgreSQL refuses `statement` for lack of privilege (not for any other reason)."""
    try:
        conn.execute(statement, params)
    except InsufficientPrivilege:
        return True
    return False


def tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {name for (name,) in rows} - {"migration_history"}


def test_every_table_has_exactly_the_privileges_each_part_needs(
    owner_url: str, part_urls: dict[str, str]
) -> None:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        schema = tables(conn)
        listed = set().union(*(set(by_table) for by_table in EXPECTED.values())) | {"staff_activities"}
        assert schema == listed, "a table without a decision on its privileges: grant in its migration"
        for part, role in PART_ROLES.items():
            for table in sorted(schema | {"migration_history"}):
                have = {
                    p
                    for p in PRIVILEGES
                    if conn.execute("SELECT has_table_privilege(%s, %s, %s)", (role, table, p)).fetchone()[0]
                }
                assert have == EXPECTED[part].get(table, set()), f"{part} on {table}"
            # No part may create anything.
            assert not conn.execute(
                "SELECT has_schema_privilege(%s, 'public', 'CREATE')", (role,)
            ).fetchone()[0]
            assert not conn.execute(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolcanlogin FROM pg_roles WHERE rolname = %s",
                (role,),
            ).fetchone()[0]


def test_the_gateway_may_only_run_its_health_check(as_part: Callable[[str], psycopg.Connection]) -> None:
    gateway = as_part("gateway")
    assert gateway.execute("SELECT 1").fetchone() == (1,)
    for table in ("session_messages", "console_users", "audit_log", "llm_provider_keys", "alert_history"):
        assert denied(gateway, f"SELECT count(*) FROM {table}"), table
    assert denied(gateway, "CREATE TABLE gateway_was_here (x int)")


def test_the_dataflow_writes_the_whole_projection_and_nothing_else(
    as_part: Callable[[str], psycopg.Connection], owner_url: str
) -> None:
    out = io.BytesIO()
    settings = Settings(WORKTOOL_CONFIG=str(REPO / "config" / "business.example.yaml"))
    replay_archive(SAMPLE, out, settings=settings, until=UNTIL)
    events = [parse_event(line) for line in out.getvalue().splitlines() if line]
    kinds = {e.event for e in events}
    assert {"message_classified", "alert_raised", "alert_cancelled", "reply_scheduled"} <= kinds
    dataflow = as_part("dataflow")
    rejected: list = []
    write_events(dataflow, events, rejected)  # the real sink, as the dataflow's login
    assert rejected == []
    with psycopg.connect(owner_url) as owner:
        for table in ("session_messages", "sessions", "alert_history", "robot_commands", "robots"):
            assert owner.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
    for table in ("console_users", "audit_log"):
        assert denied(dataflow, f"SELECT count(*) FROM {table}"), table
    # The stored LLM keys: read (ciphertexts, classifiers/llm/keys.py), never written.
    dataflow.execute("SELECT provider, ciphertext FROM llm_provider_keys")
    assert denied(
        dataflow,
        "INSERT INTO llm_provider_keys (provider, ciphertext, key_id, fingerprint, updated_by) "
        "VALUES ('x', '\\x00', 'k', 'f', 'dataflow')",
    )
    assert denied(dataflow, "UPDATE llm_provider_keys SET updated_by = 'dataflow'")
    assert denied(dataflow, "DELETE FROM llm_provider_keys")
    assert denied(
        dataflow,
        "INSERT INTO audit_log (actor, action, target_type, target_id) VALUES ('x', 'y', 'z', 'w')",
    )
    assert denied(dataflow, "DELETE FROM session_messages")
    assert denied(dataflow, "TRUNCATE alert_history")
    assert denied(dataflow, "CREATE TABLE dataflow_was_here (x int)")


def test_the_console_reads_everything_writes_accounts_and_only_appends_to_the_audit_log(
    as_part: Callable[[str], psycopg.Connection],
) -> None:
    console = as_part("console")
    for table in sorted(set(EXPECTED["console"])):
        console.execute(f"SELECT count(*) FROM {table}")
    name = f"u{uuid.uuid4().hex[:8]}"
    console.execute(
        "INSERT INTO console_users (username, role, password_hash) VALUES (%s, 'staff', '$argon2id$x')",
        (name,),
    )
    console.execute("UPDATE console_users SET disabled = true WHERE username = %s", (name,))
    console.execute(
        "INSERT INTO llm_provider_keys (provider, ciphertext, key_id, fingerprint, updated_by) "
        "VALUES (%s, '\\x00', 'k', 'f', 'test')",
        (name,),
    )
    (audit_id,) = console.execute(
        "INSERT INTO audit_log (actor, action, target_type, target_id) VALUES (%s, 'user.create', 'user', %s) "
        "RETURNING audit_id",
        (name, name),
    ).fetchone()
    # History cannot be rewritten: refused by privilege (before the append-only trigger is reached).
    assert denied(console, "UPDATE audit_log SET actor = 'someone else' WHERE audit_id = %s", (audit_id,))
    assert denied(console, "DELETE FROM audit_log WHERE audit_id = %s", (audit_id,))
    assert denied(console, "TRUNCATE audit_log")  # the trigger does not stop TRUNCATE; the grant does
    assert denied(console, "DELETE FROM console_users WHERE username = %s", (name,))
    # The projection is the dataflow's: the console reads it, it does not write it.
    assert denied(console, "UPDATE alert_history SET status = 'cancelled'")
    assert denied(console, "DELETE FROM sessions")
    assert denied(console, "CREATE TABLE console_was_here (x int)")


def test_a_later_migration_s_table_is_readable_by_the_console_only(
    owner_url: str, as_part: Callable[[str], psycopg.Connection]
) -> None:
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute("CREATE TABLE later_table (x int)")
        owner.execute("INSERT INTO later_table VALUES (1)")
    try:
        assert as_part("console").execute("SELECT x FROM later_table").fetchone() == (1,)
        assert denied(as_part("dataflow"), "SELECT x FROM later_table")
        assert denied(as_part("gateway"), "SELECT x FROM later_table")
    finally:
        with psycopg.connect(owner_url, autocommit=True) as owner:
            owner.execute("DROP TABLE later_table")


def test_down_takes_every_privilege_back(new_database: Callable[..., str]) -> None:
    url = new_database(migrated=True)
    apply_down(url, steps=len(load_migrations()) - 5)  # down to 0005: before 0006, which made the roles
    with psycopg.connect(url, autocommit=True) as conn:
        for role in PART_ROLES.values():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if not exists:
                continue  # dropped: no other database of the server used it
            for table in tables(conn):
                for p in PRIVILEGES:
                    assert not conn.execute(
                        "SELECT has_table_privilege(%s, %s, %s)", (role, table, p)
                    ).fetchone()[0], (role, table, p)
        assert conn.execute(
            "SELECT count(*) FROM pg_default_acl WHERE array_to_string(defaclacl, ',') LIKE '%worktool_%'"
        ).fetchone() == (0,)


def test_embedded_logins_are_generated_once_and_kept_private(tmp_path: Path, owner_url: str) -> None:
    urls = provision_embedded(owner_url, tmp_path)
    stored = tmp_path / "db-roles.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert set(urls) == set(PART_ROLES) and provision_embedded(owner_url, tmp_path) == urls
    assert set(json.loads(stored.read_text())) == set(PART_ROLES)
    for part, url in urls.items():
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (login_name(part),)
            member_of = {
                name
                for (name,) in conn.execute(
                    "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
                    "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
                ).fetchall()
            }
            assert member_of == {PART_ROLES[part]}
            superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            assert superuser == (False,)


def test_a_login_cannot_be_a_group_role(owner_url: str) -> None:
    with pytest.raises(ValueError, match="group role"):
        ensure_login(owner_url, "console", "worktool_console", "x" * 20)
