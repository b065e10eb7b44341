-- Sessions with a contact that stopped being current (issue 11 items 13 and 14; see
-- `chorus_core::handshakes`): the contact started over, or both sides started at once
-- and this one lost. Each is only read, for messages already on their way, until
-- `STALE_SESSION_DRAIN` after `since_ms`, then deleted; nothing is ever sent on it.
CREATE TABLE stale_sessions (
    id          INTEGER PRIMARY KEY NOT NULL,      -- the log seq of the record that made it stale
    contact     TEXT NOT NULL,
    since_ms    INTEGER NOT NULL,
    generation  INTEGER NOT NULL,                  -- the session's, as sealed
    sealed      BLOB NOT NULL
);
CREATE INDEX stale_sessions_contact ON stale_sessions (contact, id);
