DROP TABLE IF EXISTS desk_staff;
ALTER TABLE after_sales_tasks
    DROP COLUMN IF EXISTS assigned_at,
    DROP COLUMN IF EXISTS assigned_by,
    DROP COLUMN IF EXISTS waited_minutes,
    DROP COLUMN IF EXISTS closed_reason,
    DROP COLUMN IF EXISTS closed_by;
