-- Rollback of 0002: removes the 14 seeded message types (codes registered later by the sink stay; 0001's
-- rollback drops the table).
--
-- Classified messages reference these rows. Rather than null their message_type (losing the
-- classification) the rollback refuses, with a message saying why; the foreign key would refuse too,
-- but less legibly. The projection can be rebuilt from the raw archive, so the way forward is to delete
-- the messages (or drop the database) and replay.
DO $$
DECLARE
    referencing bigint;
BEGIN
    SELECT count(*) INTO referencing
    FROM session_messages
    WHERE message_type IN (
        'chat_after_sales', 'chat_complaint', 'chat_private_operation', 'chat_cooperation',
        'chat_complain_discuss', 'chat_daily', 'chat_other',
        'staff_at_user', 'staff_reply_user', 'staff_ask_user', 'staff_other',
        'operator_tone_hard', 'operator_assign_user', 'operator_other');
    IF referencing > 0 THEN
        RAISE EXCEPTION 'cannot roll back 0002_seed_message_types: % session_messages rows use these types',
            referencing
            USING HINT = 'delete those session_messages first; `worktool replay` rebuilds them';
    END IF;
END;
$$;

DELETE FROM message_types
WHERE type_code IN (
    'chat_after_sales', 'chat_complaint', 'chat_private_operation', 'chat_cooperation',
    'chat_complain_discuss', 'chat_daily', 'chat_other',
    'staff_at_user', 'staff_reply_user', 'staff_ask_user', 'staff_other',
    'operator_tone_hard', 'operator_assign_user', 'operator_other');
