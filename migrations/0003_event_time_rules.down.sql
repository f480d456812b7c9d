ALTER TABLE after_sales_tasks DROP COLUMN status_at, DROP COLUMN opened_at;

DROP INDEX robot_commands_cause_idx;
DELETE FROM robot_commands WHERE robot_id IS NULL;  -- phone/SMS notifications cannot exist before 0003
ALTER TABLE robot_commands
    DROP COLUMN cause_id,
    DROP COLUMN cause_event,
    DROP COLUMN at_list,
    DROP COLUMN channel,
    ALTER COLUMN command_type DROP DEFAULT,
    ALTER COLUMN robot_id SET NOT NULL;

ALTER TABLE alert_history
    DROP COLUMN notified_at,
    DROP COLUMN cancelled_by,
    DROP COLUMN trigger_count,
    DROP COLUMN version;

ALTER TABLE sessions DROP COLUMN state_changed_at;
