-- E-mail addresses are kept lower-cased (Tollgate compares them so); addresses written before
-- that are lowered, unless the lowered one is already taken (that account keeps its spelling
-- and is found by id).
UPDATE users SET email = lower(email)
WHERE email != lower(email)
  AND lower(email) NOT IN (SELECT email FROM users);
