ALTER TABLE robot_commands DROP COLUMN template_id, DROP COLUMN persona;
DROP TABLE ai_message_templates;
DROP TABLE ai_persona_versions;
DROP TABLE ai_personas;
