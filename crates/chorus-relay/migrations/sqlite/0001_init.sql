-- Chorus relay schema (SQLite). Everything the relay stores is opaque bytes
-- keyed by random ids; times are milliseconds since the Unix epoch.

CREATE TABLE logs (
    log_id      BLOB PRIMARY KEY NOT NULL,
    genesis     BLOB NOT NULL,
    head_seq    INTEGER NOT NULL,          -- highest seq assigned, 0 when empty
    first_seq   INTEGER NOT NULL,          -- lowest seq still stored
    blob_bytes  INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE devices (
    log_id      BLOB NOT NULL REFERENCES logs(log_id),
    device_id   BLOB NOT NULL,             -- Ed25519 public key
    ordinal     INTEGER NOT NULL,          -- registration order
    revoked_ms  INTEGER,                   -- NULL while current
    cursor_seq  INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (log_id, device_id)
);

CREATE TABLE records (
    log_id           BLOB NOT NULL,
    seq              INTEGER NOT NULL,
    epoch            INTEGER NOT NULL,
    author           BLOB NOT NULL,
    nonce            BLOB NOT NULL,
    ciphertext       BLOB NOT NULL,
    stream_tag       BLOB,
    expected_version INTEGER,
    PRIMARY KEY (log_id, seq)
) WITHOUT ROWID;

CREATE TABLE streams (
    log_id      BLOB NOT NULL,
    stream_tag  BLOB NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (log_id, stream_tag)
) WITHOUT ROWID;

CREATE TABLE mailboxes (
    mailbox_id  BLOB PRIMARY KEY NOT NULL,
    log_id      BLOB NOT NULL REFERENCES logs(log_id),
    head_seq    INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX mailboxes_by_log ON mailboxes(log_id);

CREATE TABLE envelopes (
    mailbox_id   BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    envelope_id  BLOB NOT NULL,
    payload      BLOB NOT NULL,
    received_ms  INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, seq),
    UNIQUE (mailbox_id, envelope_id)
);
CREATE INDEX envelopes_by_expiry ON envelopes(expires_ms);

CREATE TABLE prekey_addresses (
    address         BLOB PRIMARY KEY NOT NULL,
    log_id          BLOB NOT NULL REFERENCES logs(log_id),
    signed_prekey   BLOB,
    pq_last_resort  BLOB,
    updated_ms      INTEGER NOT NULL
);

CREATE TABLE one_time_prekeys (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    address  BLOB NOT NULL,
    kind     INTEGER NOT NULL,              -- 0 = X25519, 1 = PQ
    prekey   BLOB NOT NULL
);
CREATE INDEX one_time_prekeys_by_address ON one_time_prekeys(address, kind, id);

CREATE TABLE blobs (
    log_id      BLOB NOT NULL,
    blob_id     BLOB NOT NULL,
    data        BLOB NOT NULL,
    size        INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (log_id, blob_id)
);

CREATE TABLE channels (
    channel_id  BLOB PRIMARY KEY NOT NULL,
    expires_ms  INTEGER NOT NULL,
    head_seq    INTEGER NOT NULL
);

CREATE TABLE channel_messages (
    channel_id  BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    PRIMARY KEY (channel_id, seq)
);

-- The raw storage-ceiling baseline of relay-bench writes here.
CREATE TABLE bench_raw (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    client   INTEGER NOT NULL,
    payload  BLOB NOT NULL
);
