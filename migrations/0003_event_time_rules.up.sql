-- 0003: what the event-time rules (docs/rules.md §3, §4) write: session reply state, alert versions,
-- notification commands (phone and SMS have no robot), task status times.

-- The reply state of a session changes with staff windows and inline commands; this orders those
-- changes so a re-emitted older state never overwrites a newer one.
ALTER TABLE sessions ADD COLUMN state_changed_at timestamptz;

-- Every transition of an alert carries the whole alert and a version (1, 2, ...); the sink keeps the
-- highest version, so replays and re-emitted batches leave the row as it was.
ALTER TABLE alert_history
    ADD COLUMN version        integer NOT NULL DEFAULT 0 CHECK (version >= 0),
    ADD COLUMN trigger_count  integer NOT NULL DEFAULT 1 CHECK (trigger_count >= 1),
    ADD COLUMN cancelled_by   text,
    ADD COLUMN notified_at    timestamptz;

-- Notifications are commands too: WeCom texts through the notify robot, phone calls and SMS through
-- webhooks (no robot).
ALTER TABLE robot_commands
    ALTER COLUMN robot_id DROP NOT NULL,
    ALTER COLUMN command_type SET DEFAULT 203,
    ADD COLUMN channel     text NOT NULL DEFAULT 'wecom' CHECK (channel IN ('wecom', 'phone', 'sms')),
    ADD COLUMN at_list     text[] NOT NULL DEFAULT '{}',
    ADD COLUMN cause_event text,           -- alert_raised, alert_escalated, reply_scheduled, ...
    ADD COLUMN cause_id    text;           -- the alert_id or message_id behind it

CREATE INDEX robot_commands_cause_idx ON robot_commands (cause_id);

-- Event time of a task's opening and of its latest status (the sink keeps the newest status).
ALTER TABLE after_sales_tasks
    ADD COLUMN opened_at timestamptz,
    ADD COLUMN status_at timestamptz;
