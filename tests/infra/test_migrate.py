"""Migrations against a real PostgreSQL: round trips, status, checksums, locking, the CLI hooks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from infra.migrate import (
    LOCK_KEY,
    MigrationError,
    apply_down,
    apply_up,
    cli_down,
    cli_status,
    cli_up,
    load_migrations,
    status,
)
from worktool.settings import get_settings

# the packaged migrations
ALL = [
    (1, "core_schema"),
    (2, "seed_message_types"),
    (3, "event_time_rules"),
    (4, "command_status"),
    (5, "console_accounts"),
    (6, "database_roles"),
    (7, "after_sales_desk"),
    (8, "daily_reports"),
    (9, "feishu_channel"),
    (10, "customer_profiles"),
    (11, "personas_templates"),
    (12, "knowledge_base"),
    (13, "dataflow_reads_llm_keys"),
    (14, "reply_provenance"),
]
NEXT = f"{len(ALL) + 1:04d}"  # the version of a migration a test adds

pytestmark = pytest.mark.integration

TABLES = {
    "robots",
    "sessions",
    "session_robots",
    "session_messages",
    "message_types",
    "alert_history",
    "robot_commands",
    "after_sales_tasks",
    "staff_activities",
    "ai_io_logs",
    "console_users",
    "audit_log",
    "llm_provider_keys",
    "desk_staff",
    "after_sales_daily_reports",
    "customer_profiles",
    "ai_personas",
    "ai_persona_versions",
    "ai_message_templates",
    "kb_passages",
}

# docs/rules.md §2: code -> (sender category, priority)
MESSAGE_TYPES = {
    "chat_after_sales": ("user", 1),
    "chat_complaint": ("user", 1),
    "chat_private_operation": ("user", 1),
    "chat_cooperation": ("user", 3),
    "chat_complain_discuss": ("user", 4),
    "chat_daily": ("user", 5),
    "chat_other": ("user", 10),
    "staff_at_user": ("staff", 1),
    "staff_reply_user": ("staff", 3),
    "staff_ask_user": ("staff", 3),
    "staff_other": ("staff", 10),
    "operator_tone_hard": ("operator", 1),
    "operator_assign_user": ("operator", 2),
    "operator_other": ("operator", 10),
}


@pytest.fixture
def db(new_database: Callable[..., str]) -> str:
    """A fresh, unmigrated database of its own (these tests roll back, which would break a shared one)."""
    return new_database()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A private copy of the packaged migration files, for tests that edit or add files."""
    target = tmp_path / "migrations"
    target.mkdir()
    for entry in resources.files("migrations").iterdir():
        if entry.name.endswith(".sql"):
            (target / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def schema(url: str) -> dict[str, list[tuple]]:
    """Everything a migration can create in the public schema, in a comparable form."""
    return {
        "columns": query(
            url,
            """SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default
               FROM information_schema.columns WHERE table_schema = 'public'
               ORDER BY table_name, column_name""",
        ),
        "constraints": query(
            url,
            """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
               FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
        ),
        "indexes": query(
            url,
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
        ),
        "triggers": query(
            url,
            """SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
               WHERE NOT tgisinternal ORDER BY 1, 2""",
        ),
        "functions": query(
            url,
            """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
               WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
        ),
    }


def tables(url: str) -> set[str]:
    return {r[0] for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def history(url: str) -> list[tuple[int, str]]:
    return query(url, "SELECT version, name FROM migration_history ORDER BY version")


def test_packaged_migrations_pair_up_and_down() -> None:
    migrations = load_migrations()
    assert [(m.version, m.name) for m in migrations] == ALL
    assert all(m.up_sql.strip() and m.down_sql.strip() for m in migrations)


def test_up_creates_the_tables_and_records_history(db: str) -> None:
    applied = apply_up(db)

    assert [m.label for m in applied] == [f"{v:04d}_{n}" for v, n in ALL]
    assert tables(db) == TABLES | {"migration_history"}
    assert history(db) == ALL
    checksums = query(db, "SELECT checksum FROM migration_history ORDER BY version")
    assert [c for (c,) in checksums] == [m.checksum for m in load_migrations()]
    assert apply_up(db) == []  # up to date: nothing more to do


def test_message_types_are_the_fourteen_of_the_rules(db: str) -> None:
    apply_up(db)
    rows = query(db, "SELECT type_code, sender_category, priority, name_zh FROM message_types")

    assert len(rows) == 14
    assert {code: (cat, prio) for code, cat, prio, _ in rows} == MESSAGE_TYPES
    # Every name is Chinese and distinct (no copy-pasted "其他" for three categories).
    names = [name for *_, name in rows]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in name) for name in names)
    assert len(set(names)) == 14


def test_down_then_up_restores_the_same_schema(db: str) -> None:
    apply_up(db)
    before = schema(db)

    rolled_back = apply_down(db, steps=len(ALL))
    assert [m.label for m in rolled_back] == [f"{v:04d}_{n}" for v, n in reversed(ALL)]
    assert tables(db) == {"migration_history"}
    assert history(db) == []
    assert query(db, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace") == [(0,)]

    apply_up(db)
    assert schema(db) == before
    assert query(db, "SELECT count(*) FROM message_types") == [(14,)]


def test_down_to_0001_rolls_back_the_later_tables_columns_and_the_seed(db: str) -> None:
    apply_up(db)

    later = [v for v, _ in ALL[1:]]
    assert [m.version for m in apply_down(db, steps=len(later))] == later[::-1]
    assert query(db, "SELECT count(*) FROM message_types") == [(0,)]
    later_tables = {
        "console_users",
        "audit_log",
        "llm_provider_keys",
        "desk_staff",
        "after_sales_daily_reports",
        "customer_profiles",
        "ai_personas",
        "ai_persona_versions",
        "ai_message_templates",
        "kb_passages",
    }
    assert tables(db) == TABLES - later_tables | {"migration_history"}
    assert [s.state for s in status(db)] == ["applied"] + ["pending"] * len(later)

    assert [m.version for m in apply_up(db)] == later
    assert query(db, "SELECT count(*) FROM message_types") == [(14,)]


def test_up_to_a_target_version(db: str) -> None:
    assert [m.version for m in apply_up(db, target=1)] == [1]
    assert "message_types" in tables(db)
    assert query(db, "SELECT count(*) FROM message_types") == [(0,)]
    assert apply_up(db, target=1) == []
    with pytest.raises(MigrationError, match=f"no migration with version {len(ALL) + 1}"):
        apply_up(db, target=len(ALL) + 1)


def test_status_reports_pending_then_applied(db: str) -> None:
    before = status(db)  # read-only: works before migration_history exists, and does not create it
    assert [(s.version, s.name, s.state, s.applied_at) for s in before] == [
        (v, n, "pending", None) for v, n in ALL
    ]
    assert "migration_history" not in tables(db)

    apply_up(db)
    after = status(db)
    assert [s.state for s in after] == ["applied"] * len(ALL)
    assert all(s.applied and s.applied_at is not None for s in after)


def test_edited_applied_migration_is_refused(db: str, source: Path) -> None:
    apply_up(db, source=source)
    up = source / "0001_core_schema.up.sql"
    up.write_text(up.read_text() + "\nCREATE INDEX sneaky_idx ON sessions (status);\n")

    with pytest.raises(MigrationError, match=r"checksum mismatch.*0001_core_schema"):
        apply_up(db, source=source)
    with pytest.raises(MigrationError, match="checksum mismatch"):
        apply_down(db, source=source)
    assert [s.state for s in status(db, source=source)] == ["checksum mismatch"] + ["applied"] * (
        len(ALL) - 1
    )
    assert history(db) == ALL  # nothing was touched


def test_failing_migration_is_rolled_back_whole(db: str, source: Path) -> None:
    (source / f"{NEXT}_broken.up.sql").write_text(
        "CREATE TABLE half_done (id int);\nINSERT INTO half_done VALUES (1);\nSELECT 1 / 0;\n"
    )
    (source / f"{NEXT}_broken.down.sql").write_text("DROP TABLE half_done;\n")

    with pytest.raises(MigrationError, match=rf"{NEXT}_broken failed.*division by zero"):
        apply_up(db, source=source)

    # The packaged migrations committed on their own; nothing of the broken one is left behind.
    assert history(db) == ALL
    assert "half_done" not in tables(db)


def test_failing_rollback_leaves_the_migration_applied(db: str) -> None:
    apply_up(db)
    with psycopg.connect(db) as conn:
        conn.execute(
            """INSERT INTO session_messages (message_id, session_id, received_at, message_type)
               VALUES ('m1', 'group:A', now(), 'chat_daily')"""
        )

    with pytest.raises(MigrationError, match="1 session_messages rows use these types"):
        apply_down(db, steps=len(ALL) - 1)  # 0005, 0004 and 0003 roll back; 0002 refuses
    assert history(db) == ALL[:2]
    assert query(db, "SELECT count(*) FROM message_types") == [(14,)]


def test_database_newer_than_the_code_is_refused(db: str, source: Path) -> None:
    (source / f"{NEXT}_extra.up.sql").write_text("CREATE TABLE extra (id int);\n")
    (source / f"{NEXT}_extra.down.sql").write_text("DROP TABLE extra;\n")
    apply_up(db, source=source)

    with pytest.raises(MigrationError, match=f"does not know: {NEXT}_extra"):
        apply_up(db)  # the packaged files stop before it
    assert status(db)[-1].state == "missing file"


def test_old_systems_migration_history_is_recognised(db: str) -> None:
    with psycopg.connect(db) as conn:  # the shape the Node system's migrations write into
        conn.execute("CREATE TABLE migration_history (version varchar(100) PRIMARY KEY, description text)")
    with pytest.raises(MigrationError, match="not ours"):
        apply_up(db)


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"0001_a.up.sql": "SELECT 1;"}, "0001 has no down file"),
        ({"0001_a.up.sql": "SELECT 1;", "0001_b.down.sql": "SELECT 1;"}, "up is 'a' but down is 'b'"),
        ({"0002_a.up.sql": "SELECT 1;", "0002_a.down.sql": "SELECT 1;"}, "without gaps"),
    ],
)
def test_malformed_migration_sets_are_refused(tmp_path: Path, files: dict[str, str], error: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(MigrationError, match=error):
        load_migrations(tmp_path)


def test_concurrent_migrations_apply_each_file_once(db: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        try:
            results.append([m.version for m in apply_up(db)])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    # Exactly one process applied the migrations; the others waited and found nothing to do.
    assert sorted(results) == [[], [], [v for v, _ in ALL]]
    assert history(db) == ALL


def test_migration_waits_for_the_lock_then_gives_up(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        with pytest.raises(MigrationError, match="another process"):
            apply_up(db, lock_timeout_s=0.3)
    assert apply_up(db) != []  # the lock went with the other session


# ---------------------------------------------------------------------------------------------
# CLI hooks


@pytest.fixture
def env_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    def set_url(url: str | None) -> None:
        if url is None:
            monkeypatch.delenv("DATABASE_URL", raising=False)
        else:
            monkeypatch.setenv("DATABASE_URL", url)
        get_settings.cache_clear()

    yield set_url
    get_settings.cache_clear()


def test_cli_without_database_url_says_so(
    env_database: Callable[[str | None], None], capsys: pytest.CaptureFixture[str]
) -> None:
    env_database(None)
    for hook in (cli_status, lambda: cli_up(None), lambda: cli_down(1)):
        assert hook() == 2
        assert "DATABASE_URL is not set" in capsys.readouterr().err


def test_cli_up_status_down(
    db: str, env_database: Callable[[str | None], None], capsys: pytest.CaptureFixture[str]
) -> None:
    env_database(db)

    assert cli_status() == 0
    out = capsys.readouterr().out
    assert "core_schema" in out and "pending" in out

    assert cli_up(None) == 0
    assert "seed_message_types" in capsys.readouterr().out
    assert cli_up(None) == 0
    assert "up to date" in capsys.readouterr().out

    assert cli_status() == 0
    out = capsys.readouterr().out
    assert out.count("applied") >= 2 and "pending" not in out

    assert cli_down(1) == 0
    assert ALL[-1][1] in capsys.readouterr().out
    assert [s.state for s in status(db)] == ["applied"] * (len(ALL) - 1) + ["pending"]


def test_cli_reports_migration_errors(
    db: str, env_database: Callable[[str | None], None], capsys: pytest.CaptureFixture[str]
) -> None:
    env_database(db)
    apply_up(db)
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE migration_history SET checksum = 'edited' WHERE version = 1")

    assert cli_up(None) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_worktool_migrate_command(db: str, env_database: Callable[[str | None], None]) -> None:
    from commands.cli import app

    env_database(db)
    runner = CliRunner()
    result = runner.invoke(app, ["migrate", "up", "--target", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["migrate", "status"])
    assert result.exit_code == 0, result.output
    assert "applied" in result.output and "pending" in result.output


def test_unreachable_database_is_a_clear_cli_error(
    env_database: Callable[[str | None], None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_database(f"postgresql://postgres@/postgres?host={tmp_path}&connect_timeout=2")
    assert cli_status() == 1
    assert "cannot reach the database" in capsys.readouterr().err


def test_source_copy_matches_the_package(source: Path) -> None:
    # Guards the `source` fixture itself: the copies must checksum like the packaged files.
    assert [m.checksum for m in load_migrations(source)] == [m.checksum for m in load_migrations()]


def test_comments_are_not_part_of_the_checksum(db: str, source: Path) -> None:
    """Fixing a comment of an applied migration is not an edit; a database migrated when checksums
    covered the whole file is accepted too."""
    apply_up(db, source=source)
    up = source / "0001_core_schema.up.sql"
    up.write_text(up.read_text().replace("-- ", "-- reworded: ") + "\n-- a new comment\n")
    assert [s.state for s in status(db, source=source)] == ["applied"] * len(ALL)

    import psycopg

    with psycopg.connect(db, autocommit=True) as conn:  # as recorded by the first release
        conn.execute(
            "UPDATE migration_history SET checksum = "
            "'2a7eddd5459fbae4653286567abd23dd5ad1e66a33942296c4f18851c83cebf2' WHERE version = 1"
        )
    assert [s.state for s in status(db, source=source)] == ["applied"] * len(ALL)
    apply_up(db, source=source)  # no error
