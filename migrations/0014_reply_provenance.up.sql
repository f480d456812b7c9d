-- 0014: how an automatic reply was written (operators/reply_writer.py): by the LLM, with its persona,
-- model, the template it replaced and the knowledge-base passages it used; NULL for a template reply.
ALTER TABLE robot_commands ADD COLUMN reply jsonb;
