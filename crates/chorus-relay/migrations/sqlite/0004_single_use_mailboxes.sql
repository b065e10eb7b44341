-- Issue 11 item 15: an invitation's mailbox takes envelopes from its first sender
-- only. `first_envelope` is the id of the first envelope posted; later posts must be
-- that envelope again or carry it as their claim (which only the first sender and
-- the mailbox's owner know), else `410 mailbox_spent`, so whoever accepts a used
-- invitation learns it at once.
ALTER TABLE mailboxes ADD COLUMN single_use BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE mailboxes ADD COLUMN first_envelope BLOB;
