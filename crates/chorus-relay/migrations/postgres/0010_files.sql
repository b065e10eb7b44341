-- Files sent with messages: encrypted parts under a random locator, fetched by anyone
-- who knows it (the message carries it), counted against the uploading log's file
-- quota until they expire and the sweep deletes them.
ALTER TABLE logs ADD COLUMN file_bytes BIGINT NOT NULL DEFAULT 0;

CREATE TABLE file_parts (
    locator     BYTEA NOT NULL,
    part        BIGINT NOT NULL,
    log_id      BYTEA NOT NULL REFERENCES logs(log_id),
    data        BYTEA NOT NULL,
    size        BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    PRIMARY KEY (locator, part)
);

CREATE INDEX file_parts_by_expiry ON file_parts(expires_ms);
