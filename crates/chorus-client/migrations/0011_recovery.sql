-- The epoch of the last recovery state this device wrote to the relay's recovery slot:
-- a device writes a new one when it holds a newer epoch key (after a rotation), so
-- the device that one day recovers the identity can always read the log.
CREATE TABLE recovery_written (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    epoch INTEGER NOT NULL
);
