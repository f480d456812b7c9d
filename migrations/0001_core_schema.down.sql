-- Rollback of 0001: drops every table of the core schema, in reverse order of creation.
-- This destroys the projected data; it can be rebuilt by replaying the raw archive (`worktool replay`)
-- through the dataflow, which is the system of record together with worktool.raw.
-- No CASCADE: if anything outside this migration has come to depend on these objects, the rollback
-- should fail and say so rather than silently drop it too.

DROP TABLE ai_io_logs;
DROP TABLE staff_activities;
DROP TABLE after_sales_tasks;
DROP TABLE robot_commands;
DROP TABLE alert_history;
DROP TABLE session_messages;
DROP TABLE message_types;
DROP TABLE session_robots;
DROP TABLE sessions;
DROP TABLE robots;
-- The triggers went with their tables; the function is no longer used.
DROP FUNCTION touch_updated_at();
