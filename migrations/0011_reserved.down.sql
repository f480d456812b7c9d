-- 0011: the placeholder has nothing to undo.
SELECT 1;
