-- 0004: command status and robot health as the dataflow follows them (docs/rules.md §6, §8). Each
-- carries the event time of its latest change, so a re-emitted older change never overwrites a newer one.

ALTER TABLE robot_commands ADD COLUMN status_at timestamptz;
ALTER TABLE robots ADD COLUMN health_at timestamptz;
