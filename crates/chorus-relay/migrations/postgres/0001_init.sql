-- Chorus relay schema (PostgreSQL). Everything the relay stores is opaque bytes
-- keyed by random ids; times are milliseconds since the Unix epoch.

CREATE TABLE logs (
    log_id      BYTEA PRIMARY KEY NOT NULL,
    genesis     BYTEA NOT NULL,
    head_seq    BIGINT NOT NULL,          -- highest seq assigned, 0 when empty
    first_seq   BIGINT NOT NULL,          -- lowest seq still stored
    blob_bytes  BIGINT NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE devices (
    log_id      BYTEA NOT NULL REFERENCES logs(log_id),
    device_id   BYTEA NOT NULL,             -- Ed25519 public key
    ordinal     BIGINT NOT NULL,          -- registration order
    revoked_ms  BIGINT,                   -- NULL while current
    cursor_seq  BIGINT NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (log_id, device_id)
);

CREATE TABLE records (
    log_id           BYTEA NOT NULL,
    seq              BIGINT NOT NULL,
    epoch            BIGINT NOT NULL,
    author           BYTEA NOT NULL,
    nonce            BYTEA NOT NULL,
    ciphertext       BYTEA NOT NULL,
    stream_tag       BYTEA,
    expected_version BIGINT,
    PRIMARY KEY (log_id, seq)
);

CREATE TABLE streams (
    log_id      BYTEA NOT NULL,
    stream_tag  BYTEA NOT NULL,
    version     BIGINT NOT NULL,
    PRIMARY KEY (log_id, stream_tag)
);

CREATE TABLE mailboxes (
    mailbox_id  BYTEA PRIMARY KEY NOT NULL,
    log_id      BYTEA NOT NULL REFERENCES logs(log_id),
    head_seq    BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX mailboxes_by_log ON mailboxes(log_id);

CREATE TABLE envelopes (
    mailbox_id   BYTEA NOT NULL,
    seq          BIGINT NOT NULL,
    envelope_id  BYTEA NOT NULL,
    payload      BYTEA NOT NULL,
    received_ms  BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, seq),
    UNIQUE (mailbox_id, envelope_id)
);
CREATE INDEX envelopes_by_expiry ON envelopes(expires_ms);

CREATE TABLE prekey_addresses (
    address         BYTEA PRIMARY KEY NOT NULL,
    log_id          BYTEA NOT NULL REFERENCES logs(log_id),
    signed_prekey   BYTEA,
    pq_last_resort  BYTEA,
    updated_ms      BIGINT NOT NULL
);

CREATE TABLE one_time_prekeys (
    id       BIGSERIAL PRIMARY KEY,
    address  BYTEA NOT NULL,
    kind     BIGINT NOT NULL,              -- 0 = X25519, 1 = PQ
    prekey   BYTEA NOT NULL
);
CREATE INDEX one_time_prekeys_by_address ON one_time_prekeys(address, kind, id);

CREATE TABLE blobs (
    log_id      BYTEA NOT NULL,
    blob_id     BYTEA NOT NULL,
    data        BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (log_id, blob_id)
);

CREATE TABLE channels (
    channel_id  BYTEA PRIMARY KEY NOT NULL,
    expires_ms  BIGINT NOT NULL,
    head_seq    BIGINT NOT NULL
);

CREATE TABLE channel_messages (
    channel_id  BYTEA NOT NULL,
    seq         BIGINT NOT NULL,
    payload     BYTEA NOT NULL,
    PRIMARY KEY (channel_id, seq)
);

-- The raw storage-ceiling baseline of relay-bench writes here.
CREATE TABLE bench_raw (
    id       BIGSERIAL PRIMARY KEY,
    client   BIGINT NOT NULL,
    payload  BYTEA NOT NULL
);
