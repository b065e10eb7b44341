-- When this device last saw each sibling online (the relay's presence, which the relay
-- keeps in memory only for 90 seconds): what `chorus devices` shows as "last seen".
-- Kept on this device alone, never on the relay's disk.
CREATE TABLE device_seen (
    device_id BLOB PRIMARY KEY NOT NULL,
    seen_ms   INTEGER NOT NULL
);
