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

-- Issue 11 item 15: an invitation's mailbox takes its first sender only. The id of
-- our first envelope to a contact's invitation is our claim on it (every later post
-- there names it); `failed` says why a contact can never answer (someone else had
-- used the invitation), and such a contact never blocks a later introduction.
ALTER TABLE contacts ADD COLUMN invitation_claim BLOB;
ALTER TABLE contacts ADD COLUMN failed TEXT;

-- Every handshake taken from a contact, by the initiator's base key: the relay could
-- otherwise put back an old first message (one that used only the signed and the
-- last-resort prekeys, which stay) and force the conversation back onto a session
-- the contact no longer holds, or that a clone of their old state does.
CREATE TABLE handshakes (
    contact_root BLOB NOT NULL,
    base_key     BLOB NOT NULL,
    PRIMARY KEY (contact_root, base_key)
);
