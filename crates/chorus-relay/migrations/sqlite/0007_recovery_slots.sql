-- A log's recovery slot: named by a value derived from the identity's recovery code,
-- read without a session by whoever holds the code. `kit` is the root key sealed to the
-- recovery key; `state` the latest provisioning bundle (without the root) sealed to it,
-- naming `checkpoint`, a blob of the log that the relay deletes when a newer state
-- names another.
CREATE TABLE recovery_slots (
    slot_id     BLOB PRIMARY KEY,
    log_id      BLOB NOT NULL UNIQUE,
    kit         BLOB NOT NULL,
    state       BLOB,
    checkpoint  BLOB
);
