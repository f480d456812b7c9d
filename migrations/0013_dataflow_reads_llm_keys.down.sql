-- The dataflow no longer reads the stored LLM keys (it then needs WORKTOOL_LLM_API_KEY).
REVOKE SELECT ON llm_provider_keys FROM worktool_dataflow;
