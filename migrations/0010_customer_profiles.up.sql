-- 0010: customer profiles (docs/rules.md §7.6), one row per owner: a display name within its
-- conversation. Written by the dataflow from its customer_updated events (operators/profiles.py); the
-- row is the profile as of `updated_at` (event time), and an older event never overwrites a newer row.

CREATE TABLE customer_profiles (
    session_id           text NOT NULL,
    user_name            text NOT NULL,
    group_name           text,
    first_seen_at        timestamptz NOT NULL,
    last_message_at      timestamptz NOT NULL,
    message_count        integer NOT NULL,
    messages             jsonb NOT NULL,  -- {"<message type>": n}
    requirements         jsonb NOT NULL,  -- {"needs": n, "opened": n, "completed": n, "cancelled": n}
    open_tasks           jsonb NOT NULL,  -- [{task_id, task_type, opened_at}]
    alerts               jsonb NOT NULL,  -- raised, {"<alert type>": n}
    open_alerts          integer NOT NULL,
    satisfaction         double precision,
    satisfaction_trend   text,            -- up | down | flat
    cooperation          jsonb NOT NULL,  -- {"responded": n, "refused": n, "timeout": n}
    cooperation_level    text NOT NULL,   -- cooperative | partial | uncooperative | unknown
    responses            integer NOT NULL,
    avg_response_minutes double precision,
    waiting_since        timestamptz,
    health_score         integer NOT NULL CHECK (health_score BETWEEN 0 AND 100),
    health_band          text NOT NULL,   -- healthy | watch | at_risk
    updated_at           timestamptz NOT NULL,  -- the event time of the profile
    PRIMARY KEY (session_id, user_name)
);

-- The console's list: the least healthy first, and by recent activity.
CREATE INDEX customer_profiles_health ON customer_profiles (health_score, last_message_at DESC);
CREATE INDEX customer_profiles_recent ON customer_profiles (last_message_at DESC);

GRANT SELECT, INSERT, UPDATE ON customer_profiles TO worktool_dataflow;
