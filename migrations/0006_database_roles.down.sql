-- Takes back every privilege 0006 and later grants gave the parts' roles in this database, then drops
-- each role unless another database of the server still grants it something (it is kept then).
-- The public schema's CREATE stays revoked from PUBLIC (the default since PostgreSQL 15).
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM worktool_console;

DO $$
DECLARE
    part text;
BEGIN
    FOREACH part IN ARRAY ARRAY['worktool_gateway', 'worktool_dataflow', 'worktool_console'] LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', part);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM %I', part);
        EXECUTE format('REVOKE ALL ON SCHEMA public FROM %I', part);
        EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), part);
        BEGIN
            EXECUTE format('DROP ROLE %I', part);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role % kept: another database of this server still grants it privileges', part;
        END;
    END LOOP;
END
$$;
