-- How far each device of a mailbox's log has read it (the `after` of its batch reads).
-- An envelope past its TTL is deleted only once every current device has read past it,
-- so a device offline for longer than the TTL misses nothing (within the log's quota).
CREATE TABLE mailbox_cursors (
    mailbox_id  BLOB NOT NULL,
    device_id   BLOB NOT NULL,
    after_seq   INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, device_id)
);
