-- 0011: reply personas with their versions, and the reply template catalogue (docs/rules.md §5).
-- The rows come from the package data (worktool/catalogue/*.yaml): `worktool migrate up` and `worktool up`
-- copy it in after migrating (infra/migrate.py, sync_catalogue), idempotently; a persona's preset is its
-- version with source 'package', a console change (PUT /api/personas/{code}) a new version with source
-- 'console'. The stream reads the package data (a replay needs no database); the live dataflow applies
-- each persona's latest console version when it starts.

CREATE TABLE ai_personas (
    code            text PRIMARY KEY,
    name            text NOT NULL,
    role_type       text NOT NULL,
    is_preset       boolean NOT NULL,          -- one of the seven shipped
    current_version integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ai_persona_versions (
    code            text NOT NULL REFERENCES ai_personas (code) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    name            text NOT NULL,
    role_type       text NOT NULL,
    description     text NOT NULL DEFAULT '',
    system_prompt   text NOT NULL,
    tone            text NOT NULL,
    max_reply_chars integer NOT NULL CHECK (max_reply_chars BETWEEN 10 AND 2000),
    emoji           text NOT NULL CHECK (emoji IN ('none', 'light', 'rich')),
    temperature     double precision NOT NULL CHECK (temperature BETWEEN 0 AND 2),
    source          text NOT NULL CHECK (source IN ('package', 'console')),
    note            text,                      -- why (a console change's reason)
    created_by      text NOT NULL,             -- 'package' or the console account
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (code, version)
);

CREATE TABLE ai_message_templates (
    template_id   text PRIMARY KEY,
    category      text NOT NULL,             -- the category's code (welcome, greeting, ... general)
    category_name text NOT NULL,             -- its Chinese name (欢迎语, 问候语, ... 通用回复)
    name          text NOT NULL,
    template      text NOT NULL,             -- with {{variable}} placeholders
    variables     text[] NOT NULL,           -- exactly the variables it uses
    personas      text[] NOT NULL,           -- empty: any persona
    message_types text[] NOT NULL,           -- empty: never chosen by the rules (for people)
    scenarios     text[] NOT NULL,
    shifts        text[] NOT NULL,
    is_active     boolean NOT NULL DEFAULT true,  -- false: no longer in the package
    checksum      text NOT NULL,             -- of the package entry, so an unchanged one is not rewritten
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ai_message_templates_category_idx ON ai_message_templates (category);

-- A command's persona and template (reply_scheduled / command_created, docs/events.md).
ALTER TABLE robot_commands ADD COLUMN persona text, ADD COLUMN template_id text;

-- The dataflow reads the personas' versions when it starts; the console writes personas' versions
-- (it reads every table by default, 0006).
GRANT SELECT ON ai_personas, ai_persona_versions TO worktool_dataflow;
GRANT INSERT, UPDATE ON ai_personas TO worktool_console;
GRANT INSERT ON ai_persona_versions TO worktool_console;
