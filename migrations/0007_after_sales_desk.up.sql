-- 0007: the after-sales desk (docs/rules.md §7, operators/desk.py). Who has a task and since when, how it
-- closed, and each desk member's availability as the dataflow follows it (staff_status events).

ALTER TABLE after_sales_tasks
    ADD COLUMN assigned_at timestamptz,         -- event time of the latest assignment (newest wins)
    ADD COLUMN assigned_by text,                -- a console user for a manual assignment; NULL: the desk
    ADD COLUMN waited_minutes double precision, -- how long the task waited for someone available
    ADD COLUMN closed_reason text,              -- why it was completed or cancelled
    ADD COLUMN closed_by text;                  -- who closed it: staff, an owner's words, a console user

CREATE TABLE desk_staff (
    name       text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('online', 'busy', 'offline')),
    status_at  timestamptz NOT NULL,  -- event time of the change (newest wins)
    changed_by text
);

GRANT SELECT, INSERT, UPDATE ON desk_staff TO worktool_dataflow;
