-- Issue 11 item 9: login challenges and sessions live in the database, so every
-- relay process over one database honours them, and issuing a session checks the
-- device inside the same transaction in which a revocation deletes its sessions.
-- A challenge row's id is the challenge; a session row's id is the SHA-256 of
-- its token (the token itself is never stored). `n` orders one device's rows
-- (oldest first) for the per-device caps.
CREATE TABLE auth_challenges (
    id          BLOB PRIMARY KEY NOT NULL,
    log_id      BLOB NOT NULL,
    device_id   BLOB NOT NULL,
    n           INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX auth_challenges_device ON auth_challenges (log_id, device_id, n);
CREATE INDEX auth_challenges_expiry ON auth_challenges (expires_ms);

CREATE TABLE auth_sessions (
    id          BLOB PRIMARY KEY NOT NULL,
    log_id      BLOB NOT NULL,
    device_id   BLOB NOT NULL,
    n           INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
CREATE INDEX auth_sessions_device ON auth_sessions (log_id, device_id, n);
CREATE INDEX auth_sessions_expiry ON auth_sessions (expires_ms);
