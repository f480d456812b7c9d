ALTER TABLE robots DROP COLUMN health_at;
ALTER TABLE robot_commands DROP COLUMN status_at;
