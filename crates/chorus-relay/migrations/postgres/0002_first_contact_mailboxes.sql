-- Issue 11 items 3 and 8: a first-contact mailbox (intro, invitation) drops its
-- oldest envelope when full instead of refusing every stranger for the TTL, and
-- each log's unexpired envelope bytes are counted against a quota.
ALTER TABLE mailboxes ADD COLUMN drop_oldest BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE logs ADD COLUMN envelope_bytes BIGINT NOT NULL DEFAULT 0;
