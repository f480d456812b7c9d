-- 0012: a placeholder, so that the versions run without a gap on this branch (issue 16 numbers its
-- migrations 0011 personas and templates, 0012 knowledge base, 0013 the dataflow reading the LLM keys).
-- When the real 0012 lands, this file and its pair are deleted (never applied to a production database).
SELECT 1;
