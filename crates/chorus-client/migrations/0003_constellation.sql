-- The constellation: this device's fold of the identity's log (DESIGN §4). Shared state
-- (contacts, sessions, sent transcripts, prekeys, profile) is written only by the fold;
-- what stays local is the device's own key, its cursors and its pending sends.

CREATE TABLE constellation (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq  INTEGER NOT NULL DEFAULT 0,  -- records up to here are folded
    epoch        INTEGER NOT NULL,
    sealed       BLOB NOT NULL,               -- the epoch key
    lamport      INTEGER NOT NULL DEFAULT 0,
    max_prekey_id INTEGER NOT NULL DEFAULT 0  -- ids once minted are never minted again
);

-- The roster's signed, hash-chained entries; genesis first.
CREATE TABLE roster (
    idx   INTEGER PRIMARY KEY,
    entry BLOB NOT NULL
);

-- Guarded streams: the version each stream reached (the relay enforces the same).
CREATE TABLE streams (
    tag     BLOB PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
);

-- Event ids already folded: a record the relay replays under a new seq changes nothing.
CREATE TABLE seen_events (
    event_id BLOB PRIMARY KEY NOT NULL
);

-- Last-writer-wins registers (profile name, relay list), stamped.
CREATE TABLE registers (
    name         TEXT PRIMARY KEY NOT NULL,
    lamport      INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    author       BLOB NOT NULL,
    event_id     BLOB NOT NULL,
    value        BLOB NOT NULL
);

-- Messages the user sent that are not yet in the log (the relay was unreachable): the
-- plaintext waits here, sealed, and is encrypted only when its `Sent` event is appended.
CREATE TABLE pending_sends (
    envelope_id BLOB PRIMARY KEY NOT NULL,
    contact     TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
);

-- Who appended each outbox entry's `Sent`: siblings deliver it only after a timeout.
ALTER TABLE outbox ADD COLUMN author BLOB;
-- Read markers: incoming messages sent at or before this time are read.
ALTER TABLE contacts ADD COLUMN read_up_to INTEGER NOT NULL DEFAULT 0;
-- History order on every device: sender's clock, direction, then mailbox or log position.
ALTER TABLE messages ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
