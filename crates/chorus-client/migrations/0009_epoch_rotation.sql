-- Epoch rotation (chorus_core's `epoch` module): how many devices the roster had revoked
-- when the current epoch began (a revocation past it makes a rotation due), and the
-- highest epoch of any record shown (one no rotation started makes a rotation due too),
-- and when the current epoch began (a week later it rotates on schedule; 0: at the
-- identity's creation).
ALTER TABLE constellation ADD COLUMN epoch_revoked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE constellation ADD COLUMN log_epoch INTEGER NOT NULL DEFAULT 1;
ALTER TABLE constellation ADD COLUMN epoch_since_ms INTEGER NOT NULL DEFAULT 0;
