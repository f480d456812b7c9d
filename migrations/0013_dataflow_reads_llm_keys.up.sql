-- 0013: the dataflow reads the LLM provider keys stored through the console (classifiers/llm/keys.py):
-- without WORKTOOL_LLM_API_KEY it uses the stored key of WORKTOOL_LLM_PROVIDER, decrypted with
-- WORKTOOL_SECRETS_KEY, and re-reads it so that a key set or changed through the console applies without
-- a restart. SELECT only: the console alone writes keys. The rows hold ciphertexts (AES-256-GCM,
-- infra/llm_keys.py), useless without WORKTOOL_SECRETS_KEY.
GRANT SELECT ON llm_provider_keys TO worktool_dataflow;
