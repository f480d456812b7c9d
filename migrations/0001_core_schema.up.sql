-- 0001 core schema: every table the pipeline projects into, with the columns that the planned rules
-- need (staff windows, alerts, commands, after-sales tasks, robot health: docs/rules.md §3-§8), so
-- later work only fills them.
--
-- Conventions, and why:
-- * Natural text keys (robot_id, session_id, message_id, alert_id, command_id, task_id, call_id) are the
--   primary keys. The dataflow derives them deterministically, and bytewax output is at-least-once, so
--   every sink write is an upsert on one of these keys; a surrogate serial key would let a replay
--   insert a second copy.
-- * The projection tables carry NO foreign keys between each other (session_messages -> sessions,
--   session_robots -> robots, ...). They are written by several bytewax workers in batches whose
--   boundaries and order across tables are arbitrary (a robot_joined_session event can be written
--   before the message that created its session), so a foreign key would turn a harmless reordering
--   into a crashed dataflow. The one foreign key, session_messages.message_type -> message_types, points
--   at reference data, which the sink registers before it writes messages.
-- * Times are timestamptz in UTC. Event times (received_at, raised_at, ...) come from the stream;
--   created_at / updated_at are processing-time audit columns (updated_at kept by a trigger).
-- * CHECK constraints hold only the closed vocabularies of docs/rules.md; open vocabularies that are business
--   configuration (task types, alert types, robot names) are not constrained here.

-- Keeps updated_at honest for every writer (the sink, the console API, later services) without each
-- UPDATE having to remember it. The sink skips no-op upserts, so a replayed event does not even fire it.
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Robots: identity and role come from the business configuration; status and health from callbacks
-- and command results (docs/rules.md §8).
CREATE TABLE robots (
    robot_id                  text PRIMARY KEY,
    name                      text,
    role                      text CHECK (role IN ('monitor', 'notify', 'reply_day', 'reply_night')),
    status                    text NOT NULL DEFAULT 'unknown'
                              CHECK (status IN ('online', 'offline', 'unknown')),
    last_seen_at              timestamptz,  -- event time of the newest message the robot reported
    last_status_at            timestamptz,  -- event time of the online/offline callback behind `status`
    send_failure_count        integer NOT NULL DEFAULT 0 CHECK (send_failure_count >= 0),
    consecutive_failure_count integer NOT NULL DEFAULT 0 CHECK (consecutive_failure_count >= 0),
    last_send_failure_at      timestamptz,
    health_score              integer NOT NULL DEFAULT 100 CHECK (health_score BETWEEN 0 AND 100),
    health_status             text NOT NULL DEFAULT 'healthy'
                              CHECK (health_status IN ('healthy', 'warning', 'critical')),
    extra                     jsonb NOT NULL DEFAULT '{}',
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);

-- Sessions: one conversation (a group, or one robot's private chat with one person; see
-- worktool.models.session_id_for). WorkTool gives no stable ids, only display names.
CREATE TABLE sessions (
    session_id         text PRIMARY KEY,
    is_group           boolean NOT NULL,
    room_type          smallint CHECK (room_type BETWEEN 1 AND 4),
    group_name         text,
    group_remark       text,
    user_name          text,         -- the counterpart of a private chat; NULL for groups
    reply_target       text,         -- groupRemark, else groupName (groups); receivedName (private)
    message_count      integer NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    first_message_at   timestamptz,
    last_message_at    timestamptz,
    status             text NOT NULL DEFAULT 'auto',  -- 'auto' (AI may reply) or a staff-handling state
    ai_paused          boolean NOT NULL DEFAULT false,  -- [暂停回复] / [恢复回复]
    staff_active_until timestamptz,  -- end of the 10-minute staff-active window (docs/rules.md §3)
    satisfaction       real CHECK (satisfaction BETWEEN 0 AND 1),  -- rolling user satisfaction
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sessions_last_message_at_idx ON sessions (last_message_at DESC);

-- Which robots are in which session: a reply robot may only answer where it has reported a message
-- (docs/rules.md §5).
CREATE TABLE session_robots (
    session_id    text NOT NULL,
    robot_id      text NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (session_id, robot_id)
);

-- "Which sessions is this robot in?" (the primary key serves the other direction).
CREATE INDEX session_robots_robot_id_idx ON session_robots (robot_id);

-- Message types (docs/rules.md §2). Rows are seeded by migration 0002 so that rolling the data back is a
-- separate, visible step from dropping the table.
CREATE TABLE message_types (
    type_code       text PRIMARY KEY,
    sender_category text NOT NULL CHECK (sender_category IN ('user', 'staff', 'operator')),
    name_zh         text NOT NULL,
    description     text,
    priority        integer NOT NULL CHECK (priority >= 1),  -- 1 = most urgent
    is_enabled      boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every message once, however many robots reported it (message_id is the dedup key).
CREATE TABLE session_messages (
    message_id            text PRIMARY KEY,
    session_id            text NOT NULL,
    robot_id              text,          -- the robot that reported it first
    received_at           timestamptz NOT NULL,  -- gateway stamp of the first report (event time)
    sender_name           text,          -- WorkTool's receivedName: a display name, not an id
    sender_type           text CHECK (sender_type IN ('user', 'staff', 'operator', 'assistant', 'robot')),
    -- The old schema had `content NOT NULL` without a default, so an image (empty `spoken`) failed to
    -- insert (docs/platform.md §1). Empty text is a valid message.
    content               text NOT NULL DEFAULT '',
    raw_content           text NOT NULL DEFAULT '',  -- rawSpoken, with the @mentions
    text_type             smallint,      -- WorkTool textType code
    content_kind          text,          -- its name (text, image, voice, ...)
    room_type             smallint CHECK (room_type BETWEEN 1 AND 4),
    group_name            text,
    group_remark          text,
    at_me                 boolean NOT NULL DEFAULT false,
    mentions              text[] NOT NULL DEFAULT '{}',
    is_echo               boolean NOT NULL DEFAULT false,  -- one of our own robots' messages
    -- NULL for robot messages (they get no type). NO ACTION on delete: seed data referenced by
    -- messages cannot disappear under them.
    message_type          text REFERENCES message_types (type_code),
    confidence            real CHECK (confidence BETWEEN 0 AND 1),
    reason                text,
    decided_by            text,          -- placeholder | rules | llm
    sentiment             real CHECK (sentiment BETWEEN -1 AND 1),
    satisfaction          real CHECK (satisfaction BETWEEN 0 AND 1),
    need_reply            boolean,
    staff_command         text,          -- [暂停回复] / [恢复回复] / [已解决] / [转人工]
    is_staff_intervention boolean NOT NULL DEFAULT false,  -- docs/rules.md §3
    intervention_reason   text,
    extra                 jsonb NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- A session's history in order (context building, dashboards).
CREATE INDEX session_messages_session_received_idx ON session_messages (session_id, received_at);
-- Reports by type; also lets the foreign key check deletes from message_types without a scan.
CREATE INDEX session_messages_message_type_idx ON session_messages (message_type);
-- Messages needing intervention are rare: a partial index stays small.
CREATE INDEX session_messages_intervention_idx ON session_messages (received_at)
    WHERE is_staff_intervention;

-- Alerts (docs/rules.md §4). alert_key = (alert_type, session, user) drives escalation by repeat.
CREATE TABLE alert_history (
    alert_id            text PRIMARY KEY,
    alert_type          text NOT NULL,
    alert_key           text NOT NULL,
    session_id          text,
    user_name           text,
    group_name          text,
    robot_id            text,
    alert_level         smallint NOT NULL CHECK (alert_level BETWEEN 1 AND 4),  -- 1 信息 .. 4 紧急
    status              text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'escalated', 'cancelled', 'resolved')),
    message_id          text,           -- the triggering message
    message_content     text,
    alert_message       text,           -- the notification text sent
    notification_status text NOT NULL DEFAULT 'pending'
                        CHECK (notification_status IN ('pending', 'sent', 'failed')),
    escalation_count    integer NOT NULL DEFAULT 0 CHECK (escalation_count >= 0),
    escalation_history  jsonb NOT NULL DEFAULT '[]',  -- [{at, from_level, to_level, by}]
    cancel_reason       text CHECK (cancel_reason IN
                        ('staff_intervened', 'user_satisfied', 'problem_solved', 'expired', 'manual')),
    cancelled_at        timestamptz,
    raised_at           timestamptz NOT NULL,  -- event time of the first trigger
    last_triggered_at   timestamptz,           -- event time of the latest repeat (escalation window)
    handled_by          text,
    handled_at          timestamptz,
    parent_alert_id     text,  -- no FK: parent and child may land in different sink batches
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- A cancelled alert always says why and when (docs/rules.md §4 cancellation).
    CONSTRAINT alert_history_cancel_complete CHECK (
        status <> 'cancelled' OR (cancel_reason IS NOT NULL AND cancelled_at IS NOT NULL)
    )
);

-- Escalation looks up the newest alert of a key.
CREATE INDEX alert_history_key_raised_idx ON alert_history (alert_key, raised_at DESC);
CREATE INDEX alert_history_session_idx ON alert_history (session_id);
-- The console lists what is still open; closed alerts are the bulk of the table.
CREATE INDEX alert_history_open_idx ON alert_history (raised_at)
    WHERE status IN ('open', 'escalated');

-- Commands sent to WorkTool (docs/rules.md §6): pending -> sent -> completed | failed, or timeout -> unknown.
CREATE TABLE robot_commands (
    command_id          text PRIMARY KEY,
    robot_id            text NOT NULL,
    command_type        integer NOT NULL,  -- WorkTool type, e.g. 203 send text
    command_data        jsonb NOT NULL DEFAULT '{}',  -- the item of sendRawMessage's `list`
    target              text,              -- titleList target (group remark/name or person)
    content             text,
    priority            integer NOT NULL DEFAULT 5,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sent', 'completed', 'failed', 'timeout', 'unknown')),
    -- WorkTool's messageId, the only correlation with result callbacks. Not unique: one
    -- sendRawMessage request carries up to 100 commands and gets one messageId.
    worktool_message_id text,
    retry_count         integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries         integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    lookup_count        integer NOT NULL DEFAULT 0 CHECK (lookup_count >= 0),  -- timeout re-checks
    error_code          integer,
    error_message       text,
    result              jsonb,            -- the result callback as received
    due_at              timestamptz,      -- when the reply delay says to send it
    sent_at             timestamptz,
    accepted_at         timestamptz,      -- WorkTool answered with a messageId
    executed_at         timestamptz,      -- runTime of the result callback
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX robot_commands_worktool_message_id_idx ON robot_commands (worktool_message_id);
CREATE INDEX robot_commands_robot_created_idx ON robot_commands (robot_id, created_at);
-- Commands still waiting for a result or a manual check: what the timeout logic and the console read.
CREATE INDEX robot_commands_open_idx ON robot_commands (status, due_at)
    WHERE status IN ('pending', 'sent', 'timeout', 'unknown');

-- After-sales tasks (docs/rules.md §7).
CREATE TABLE after_sales_tasks (
    task_id                text PRIMARY KEY,
    session_id             text,
    robot_id               text,
    user_name              text,
    group_name             text,
    task_type              text NOT NULL,  -- configurable list (scan_qr, bind_phone, ...)
    issue_description      text,
    priority               text NOT NULL DEFAULT 'normal'
                           CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status                 text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'assigned', 'waiting_user', 'in_progress',
                                             'completed', 'cancelled')),
    assigned_staff_name    text,
    auto_assigned_at       timestamptz,
    due_at                 timestamptz,
    completed_at           timestamptz,
    resolution             text,
    user_response_status   text NOT NULL DEFAULT 'pending'
                           CHECK (user_response_status IN ('pending', 'responded', 'refused', 'timeout')),
    user_response_time     timestamptz,
    user_cooperation_level text NOT NULL DEFAULT 'unknown'
                           CHECK (user_cooperation_level IN ('high', 'medium', 'low', 'unknown')),
    staff_at_user_time     timestamptz,  -- staff @-ed the owner: starts the response clock
    staff_follow_up_time   timestamptz,  -- staff acted after the owner responded
    source_message_id      text,         -- the message that created the task
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX after_sales_tasks_session_idx ON after_sales_tasks (session_id);
-- Auto-assignment counts each staff member's open tasks.
CREATE INDEX after_sales_tasks_staff_status_idx ON after_sales_tasks (assigned_staff_name, status);
CREATE INDEX after_sales_tasks_open_idx ON after_sales_tasks (created_at)
    WHERE status NOT IN ('completed', 'cancelled');

-- What staff did (messages, @s, commands, interventions, task actions): the daily report's input.
-- activity_id is a natural key derived by the writer (e.g. "<message_id>:<activity_type>") so a
-- replay upserts instead of appending a copy.
CREATE TABLE staff_activities (
    activity_id     text PRIMARY KEY,
    session_id      text,
    robot_id        text,
    staff_name      text NOT NULL,
    activity_type   text NOT NULL,  -- message, at_user, command, intervention, task_follow_up, ...
    activity_detail jsonb NOT NULL DEFAULT '{}',
    message_id      text,
    task_id         text,
    alert_id        text,
    occurred_at     timestamptz NOT NULL,  -- event time
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX staff_activities_staff_time_idx ON staff_activities (staff_name, occurred_at);
CREATE INDEX staff_activities_session_idx ON staff_activities (session_id, occurred_at);

-- One row per LLM call. `id` orders rows for humans; call_id (chosen by the caller) is the idempotency
-- key the sink conflicts on.
CREATE TABLE ai_io_logs (
    id                  bigserial PRIMARY KEY,
    call_id             text NOT NULL UNIQUE,
    session_id          text,
    message_id          text,
    robot_id            text,
    operation_type      text,   -- classify, reply, sentiment, ...
    provider            text,   -- openai | dashscope
    model_id            text,
    ai_input            text,   -- the prompt as sent (chat messages serialised as JSON)
    ai_output           text,   -- the completion text, or the error
    status              text,   -- success | error | timeout | fallback
    error_message       text,
    request_duration_ms integer,
    input_tokens        integer,
    output_tokens       integer,
    total_tokens        integer,
    called_at           timestamptz NOT NULL,  -- event time of the call
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ai_io_logs_message_idx ON ai_io_logs (message_id);
CREATE INDEX ai_io_logs_session_called_idx ON ai_io_logs (session_id, called_at);

CREATE TRIGGER robots_touch BEFORE UPDATE ON robots
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER sessions_touch BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER message_types_touch BEFORE UPDATE ON message_types
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER session_messages_touch BEFORE UPDATE ON session_messages
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER alert_history_touch BEFORE UPDATE ON alert_history
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER robot_commands_touch BEFORE UPDATE ON robot_commands
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER after_sales_tasks_touch BEFORE UPDATE ON after_sales_tasks
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
