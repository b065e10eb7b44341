-- `per-device` (docs/strategies.md): what belongs to this device alone and is never in
-- the log. Its own prekeys (the bundle at its per-device address; private halves
-- sealed), each contact's device list as last accepted (verified under the contact's
-- root; never replaced by an older one), and the pairwise sessions with the contacts'
-- devices (sealed; a retired one still decrypts until `retired_ms` + the mailbox
-- lifetime). A pending send's copies, once encrypted, wait in `pending_sends.copies`
-- until the relay has them, so a retry posts the same bytes.
CREATE TABLE device_prekeys (
    id          INTEGER PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    public      BLOB NOT NULL,
    sealed      BLOB NOT NULL
);

CREATE TABLE contact_device_lists (
    contact     BLOB PRIMARY KEY NOT NULL,
    serial      INTEGER NOT NULL,
    list        BLOB NOT NULL
);

CREATE TABLE pairwise_sessions (
    contact     BLOB NOT NULL,
    device      BLOB NOT NULL,
    peer_generation INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    retired_ms  INTEGER,
    sealed      BLOB NOT NULL,
    PRIMARY KEY (contact, device)
);

ALTER TABLE pending_sends ADD COLUMN copies BLOB;
