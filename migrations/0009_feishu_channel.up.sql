-- 0009: a fourth command channel, `feishu`: the desk's daily report (docs/rules.md §7) also goes to a Feishu
-- custom bot (WORKTOOL_FEISHU_WEBHOOK_URL) when one is configured. Such commands have no robot, like
-- phone calls and SMS.

ALTER TABLE robot_commands DROP CONSTRAINT robot_commands_channel_check;
ALTER TABLE robot_commands
    ADD CONSTRAINT robot_commands_channel_check CHECK (channel IN ('wecom', 'phone', 'sms', 'feishu'));
