-- Feishu commands cannot exist before 0009.
DELETE FROM robot_commands WHERE channel = 'feishu';
ALTER TABLE robot_commands DROP CONSTRAINT robot_commands_channel_check;
ALTER TABLE robot_commands
    ADD CONSTRAINT robot_commands_channel_check CHECK (channel IN ('wecom', 'phone', 'sms'));
