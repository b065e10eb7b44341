-- Files sent with messages: encrypted parts under a random locator, fetched by anyone
-- who knows it (the message carries it), counted against the uploading log's file
-- quota until they expire and the sweep deletes them.
ALTER TABLE logs ADD COLUMN file_bytes INTEGER NOT NULL DEFAULT 0;

CREATE TABLE file_parts (
    locator     BLOB NOT NULL,
    part        INTEGER NOT NULL,
    log_id      BLOB NOT NULL REFERENCES logs(log_id),
    data        BLOB NOT NULL,
    size        INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    PRIMARY KEY (locator, part)
);

CREATE INDEX file_parts_by_expiry ON file_parts(expires_ms);
