-- 0010: a placeholder, so that the versions run without a gap on this branch. Issue 16 numbers its
-- migrations 0010 (personas), 0011 (templates) and 0012 (knowledge base); when the real 0010 lands,
-- this file and its down file are deleted (never applied to a production database).
SELECT 1;
