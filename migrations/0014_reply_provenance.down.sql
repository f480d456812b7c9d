ALTER TABLE robot_commands DROP COLUMN reply;
