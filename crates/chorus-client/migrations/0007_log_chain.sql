-- The log verified against the relay (chorus-core `chain.rs`): each stream's last
-- record hash, which the next guarded record must name, and the log chain hash at
-- every folded seq, which authors' claimed heads are compared with.
ALTER TABLE streams ADD COLUMN head BLOB;

CREATE TABLE log_chain (
    seq  INTEGER PRIMARY KEY NOT NULL,
    hash BLOB NOT NULL
);
