-- A link in progress (DESIGN §7 "idempotent and resumable"): the new device's keys are
-- kept (sealed) from before its code is shown until the link completes, so a retried
-- `chorus link new` offers the same device again and the roster never gains two.
CREATE TABLE pending_link (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    relay_url   TEXT NOT NULL,
    device_name TEXT NOT NULL,
    sealed      BLOB NOT NULL,   -- device signing key ‖ device DH key
    created_ms  INTEGER NOT NULL
);
