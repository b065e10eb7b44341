-- The `per-device` strategy: an identity's root-signed device list (the relay checks
-- the signature and that the serial grows), its entries (what a post's device set
-- is checked against, inside the post's transaction), and the one device an
-- envelope copy is for (NULL: every device of the mailbox's identity).
CREATE TABLE device_lists (
    log_id  BLOB PRIMARY KEY NOT NULL REFERENCES logs(log_id),
    serial  INTEGER NOT NULL,
    list    BLOB NOT NULL
);

CREATE TABLE listed_devices (
    log_id      BLOB NOT NULL REFERENCES logs(log_id),
    device_id   BLOB NOT NULL,
    generation  INTEGER NOT NULL,
    PRIMARY KEY (log_id, device_id)
);

ALTER TABLE envelopes ADD COLUMN recipient BLOB;
