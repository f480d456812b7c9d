-- 0010: the placeholder has nothing to undo.
SELECT 1;
