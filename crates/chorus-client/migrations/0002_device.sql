-- Identity, prekeys, contacts, mailboxes, history and outbox of one device.
-- Secret and private values are in `sealed` columns (AES-256-GCM under the store key,
-- associated data naming the row). Ids, public keys and timestamps are plain.

-- This device's identity: exactly one row once `chorus init` has run.
CREATE TABLE identity (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    name          TEXT NOT NULL,
    relay_url     TEXT NOT NULL,
    log_id        BLOB NOT NULL,
    intro_mailbox BLOB NOT NULL,
    sealed        BLOB NOT NULL,          -- root, identity DH and device keys
    created_ms    INTEGER NOT NULL
);

-- Private prekeys. Kept until consumed (one-time) or until a grace period after they
-- were replaced (signed, last-resort PQ): the relay may still hand out the public half.
CREATE TABLE prekeys (
    id          INTEGER PRIMARY KEY,      -- the id contacts name in their first message
    kind        TEXT NOT NULL CHECK (kind IN ('signed', 'one_time', 'pq')),
    last_resort INTEGER NOT NULL DEFAULT 0,
    purpose     TEXT NOT NULL CHECK (purpose IN ('directory', 'invitation')),
    public      BLOB NOT NULL,            -- the signed wire form, as published
    sealed      BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    retired_ms  INTEGER                   -- when it was replaced
);

CREATE TABLE contacts (
    name          TEXT PRIMARY KEY NOT NULL, -- the local alias
    root_key      BLOB NOT NULL UNIQUE,      -- their identity
    identity      BLOB NOT NULL,             -- encoded IdentityKeys
    relay_url     TEXT NOT NULL,             -- where send_mailbox lives
    send_mailbox  BLOB NOT NULL,             -- where we post: their invitation/intro mailbox until their Hello
    recv_mailbox  BLOB NOT NULL UNIQUE,      -- the mailbox we created for them
    hello_acked   INTEGER NOT NULL DEFAULT 0, -- they wrote to recv_mailbox: they have our Hello
    answered      INTEGER NOT NULL DEFAULT 0, -- we decrypted a message from them: the session runs both ways
    invitation    BLOB UNIQUE,               -- the invitation mailbox we accepted (refuses a second accept)
    added_ms      INTEGER NOT NULL
);

-- Mailboxes this identity reads, with how far each has been processed.
CREATE TABLE mailboxes (
    mailbox_id BLOB PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('intro', 'invitation', 'contact')),
    contact    TEXT,
    after_seq  INTEGER NOT NULL DEFAULT 0,
    registered INTEGER NOT NULL DEFAULT 1,  -- 0: created for a new contact, not yet registered at the relay
    created_ms INTEGER NOT NULL
);

-- History, in local order (`id`).
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact     TEXT NOT NULL,
    outgoing    INTEGER NOT NULL,
    envelope_id BLOB NOT NULL UNIQUE,
    sent_ms     INTEGER NOT NULL,
    stored_ms   INTEGER NOT NULL,
    sealed      BLOB NOT NULL             -- the text
);
CREATE INDEX messages_by_contact ON messages (contact, id);

-- Envelopes persisted (with the session that produced them) but not yet accepted by
-- the contact's relay. Posting is idempotent by envelope id, so a retry after a crash
-- delivers exactly once.
CREATE TABLE outbox (
    envelope_id BLOB PRIMARY KEY NOT NULL,
    contact     TEXT NOT NULL,
    relay_url   TEXT NOT NULL,
    mailbox_id  BLOB NOT NULL,
    envelope    BLOB NOT NULL,
    created_ms  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
