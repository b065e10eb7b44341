-- The local store of one device. Secret values are sealed by the client (AES-256-GCM
-- under the store key, associated data naming the row); SQLite sees only ciphertext.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

-- One Double Ratchet session per contact. `generation` is the session's generation at
-- the last save: restoring a snapshot older than it is refused (stale state would reuse
-- message keys).
CREATE TABLE sessions (
    contact    TEXT PRIMARY KEY NOT NULL,
    generation INTEGER NOT NULL,
    sealed     BLOB NOT NULL
);
