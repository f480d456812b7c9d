-- 0008: the after-sales daily report (docs/rules.md §7), one row per local day, written by the dataflow
-- from its daily_report event (operators/desk.py). A replay of the day writes the same row again.

CREATE TABLE after_sales_daily_reports (
    report_date          date PRIMARY KEY,  -- the local day (after_sales time zone)
    timezone             text NOT NULL,
    tasks_opened         integer NOT NULL,
    tasks_completed      integer NOT NULL,
    tasks_cancelled      integer NOT NULL,
    opened_and_completed integer NOT NULL,
    completion_rate      double precision,
    avg_handling_minutes double precision,
    p90_handling_minutes double precision,
    sla_attained         double precision,
    open_at_end          integer NOT NULL,
    overdue_at_end       integer NOT NULL,
    cooperation          jsonb NOT NULL,  -- {"responded": n, "refused": n, "timeout": n}
    staff                jsonb NOT NULL,  -- [{name, assigned, completed, open_at_end, reminders, ...}]
    alerts               jsonb NOT NULL,  -- [{alert_type, level, raised, escalated}]
    funnel               jsonb NOT NULL,  -- {"needs": n, "opened": n, "assigned": n, "completed": n}
    summary              text NOT NULL,   -- the WeCom text
    generated_at         timestamptz NOT NULL  -- event time: 24:00 of the day
);

GRANT SELECT, INSERT, UPDATE ON after_sales_daily_reports TO worktool_dataflow;
