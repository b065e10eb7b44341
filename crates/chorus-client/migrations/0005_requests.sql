-- Message requests (DESIGN §5 "Strangers are requests"): a stranger's first message to
-- the intro mailbox is held here, on this device only, decrypted and sealed, with no
-- contact, mailbox, log record or reply, until a device of the identity accepts it
-- (a `ContactUpserted` in the log) or blocks the sender (a `Blocked` register).
CREATE TABLE requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- what `chorus requests accept ID` names
    root_key    BLOB NOT NULL UNIQUE,              -- their identity
    identity    BLOB NOT NULL,                     -- encoded IdentityKeys
    name        TEXT NOT NULL,                     -- the name they gave (a suggestion)
    relay_url   TEXT NOT NULL,                     -- their hello: where to answer
    mailbox     BLOB NOT NULL,
    consumed    TEXT NOT NULL,                     -- prekey ids their first message used
    generation  INTEGER NOT NULL,                  -- the session's, as sealed
    sealed      BLOB NOT NULL,                     -- the responder session
    received_ms INTEGER NOT NULL
);

-- The messages a request holds (bounded per request), sealed.
CREATE TABLE request_messages (
    envelope_id BLOB PRIMARY KEY NOT NULL,
    request     INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    sent_ms     INTEGER NOT NULL,
    position    INTEGER NOT NULL,                  -- the intro mailbox seq
    sealed      BLOB NOT NULL
);

-- Requests dropped because too many were pending (oldest first): counted, shown.
ALTER TABLE constellation ADD COLUMN requests_dropped INTEGER NOT NULL DEFAULT 0;

-- The outbox retries each row on its own schedule, so one unreachable relay never
-- holds up the rest; the last failure is kept for `chorus status`.
ALTER TABLE outbox ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
