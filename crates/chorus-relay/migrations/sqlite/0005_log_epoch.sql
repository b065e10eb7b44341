-- A log's epoch: the highest epoch of any record appended to it (0 before any).
-- An append with a record under an older epoch is refused (`409 stale_epoch`), so
-- after a rotation nothing sealed under the old key, which a revoked device holds,
-- lands in the log. Kept here, moved with the head, because `records` may be
-- trimmed.
ALTER TABLE logs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
-- Logs from before this column start at their highest stored record's epoch.
UPDATE logs SET epoch = COALESCE(
    (SELECT MAX(r.epoch) FROM records r WHERE r.log_id = logs.log_id), 0);
