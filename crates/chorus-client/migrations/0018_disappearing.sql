-- When a message disappears (its conversation's timer was on when it was sent): the
-- sent time plus the timer, set by the sweep (`Device::expire_messages`). NULL: never.
ALTER TABLE messages ADD COLUMN expires_ms INTEGER;
CREATE INDEX messages_by_expiry ON messages (expires_ms) WHERE expires_ms IS NOT NULL;
