-- 0006: one database role per part, so that no part connects as the owner (docs/operations.md, "Database
-- roles"). These are NOLOGIN group roles; whoever provisions creates the login users and grants them a
-- group: `worktool up` for its embedded PostgreSQL, `worktool migrate logins` from the per-part URLs
-- (WORKTOOL_DATABASE_URL_GATEWAY, _DATAFLOW, _CONSOLE), or the operator by hand.
--   worktool_gateway   connect, nothing else: its /healthz runs SELECT 1
--   worktool_dataflow  read and write the projection tables the Postgres sink writes (sinks/postgres.py);
--                      nothing on the console's accounts, audit log or keys
--   worktool_console   read every table; write console_users and llm_provider_keys; audit_log insert only
--   (the dispatcher never uses the database and gets no role)
-- Roles belong to the server, not to one database: they are created only when missing, and the grants
-- below are this database's. Migrating needs a role with CREATEROLE (or a superuser).
-- A LATER MIGRATION THAT CREATES A TABLE MUST GRANT on it what a part needs: the console reads it by
-- default (the default privileges below, for tables created by the migrating role), everything else
-- is explicit (tests/infra/test_database_roles.py lists every table's privileges and fails on a new one).

DO $$
DECLARE
    part text;
BEGIN
    FOREACH part IN ARRAY ARRAY['worktool_gateway', 'worktool_dataflow', 'worktool_console'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = part) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', part);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database of this server created it at the same moment
            END;
        END IF;
    END LOOP;
    EXECUTE format(
        'GRANT CONNECT ON DATABASE %I TO worktool_gateway, worktool_dataflow, worktool_console',
        current_database()
    );
END
$$;

-- PostgreSQL before 15 lets every role create tables in the public schema; no part may.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO worktool_dataflow, worktool_console;

-- The dataflow: upserts (INSERT ... ON CONFLICT DO UPDATE ... WHERE reads the row) on the projection.
GRANT SELECT, INSERT, UPDATE ON
    robots, sessions, session_robots, message_types, session_messages,
    alert_history, robot_commands, after_sales_tasks, ai_io_logs
    TO worktool_dataflow;
GRANT USAGE ON SEQUENCE ai_io_logs_id_seq TO worktool_dataflow;

-- The console: reads everything it shows, writes accounts and keys, appends to the audit log.
GRANT SELECT ON
    robots, sessions, session_robots, message_types, session_messages, alert_history, robot_commands,
    after_sales_tasks, staff_activities, ai_io_logs, console_users, audit_log, llm_provider_keys
    TO worktool_console;
GRANT INSERT, UPDATE ON console_users, llm_provider_keys TO worktool_console;
GRANT INSERT ON audit_log TO worktool_console;
GRANT USAGE ON SEQUENCE audit_log_audit_id_seq TO worktool_console;

-- Tables later migrations create (as this role): the console may read them; writes are granted there.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO worktool_console;
