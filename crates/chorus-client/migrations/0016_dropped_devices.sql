-- `per-device`: the devices a contact's newer list dropped (a revocation), each with
-- the generation it was listed at and when it stopped: a first copy such a device sent
-- before then is still read by a device of ours that was offline through the change
-- (`chorus_core::per_device::first_copy`); anything it sent after is refused.
CREATE TABLE contact_dropped_devices (
    contact     BLOB NOT NULL,
    device      BLOB NOT NULL,
    generation  INTEGER NOT NULL,
    dropped_ms  INTEGER NOT NULL,
    PRIMARY KEY (contact, device)
);
