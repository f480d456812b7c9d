-- 0005: the console's accounts, its audit log and the LLM provider keys set through it.

-- Accounts created with `worktool users add` or through the API (accounts kept in the users file are
-- not stored here). Only argon2 hashes, never a password.
CREATE TABLE console_users (
    username      text PRIMARY KEY CHECK (length(username) BETWEEN 1 AND 64),
    role          text NOT NULL CHECK (role IN ('admin', 'supervisor', 'staff', 'inspector')),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    disabled      boolean NOT NULL DEFAULT false,
    created_by    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER console_users_touch BEFORE UPDATE ON console_users
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- Every write made through the console or the users command: who (and with which role), what, on
-- what, when, from where, the state before and after. Append-only: a trigger refuses UPDATE and DELETE
-- so that a console bug cannot rewrite history (dropping the table still can: that is a migration).
CREATE TABLE audit_log (
    audit_id    bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,         -- the account name, or the service account's
    actor_role  text,                  -- its role at the time; NULL for the local users command
    action      text NOT NULL,         -- alert.cancel, alert.escalate, user.create, user.update, llm_key.set
    target_type text NOT NULL,         -- alert, user, llm_key
    target_id   text NOT NULL,
    client_addr text,                  -- the HTTP client's address, or "local:<host>" for the command
    request_id  text,                  -- the control record's request_id for alert actions
    before      jsonb,                 -- NULL when the target did not exist
    after       jsonb
);

CREATE INDEX audit_log_at_idx ON audit_log (at DESC, audit_id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- LLM provider keys set through the console, AES-256-GCM encrypted with WORKTOOL_SECRETS_KEY (the
-- provider name is the associated data, so a ciphertext cannot be moved to another provider's row).
-- key_id names the encryption key (a hash prefix of it) so a rotated key is noticed, not misread.
CREATE TABLE llm_provider_keys (
    provider    text PRIMARY KEY,
    ciphertext  bytea NOT NULL,        -- 12-byte nonce, then the sealed key
    key_id      text NOT NULL,
    fingerprint text NOT NULL,         -- sha256 prefix of the plaintext key: shown instead of the key
    updated_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER llm_provider_keys_touch BEFORE UPDATE ON llm_provider_keys
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
