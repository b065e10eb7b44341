-- The root key a log's roster entries must now be signed by, once the identity rolled
-- it (`chorus identity roll`); NULL: the root its genesis names.
ALTER TABLE logs ADD COLUMN root BLOB;
