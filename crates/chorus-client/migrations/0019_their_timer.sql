-- The timer setting a contact's messages last said (set_ms then secs, 8 bytes each):
-- only a change is taken up, so a contact repeating a setting our log clamped or
-- refused does not make us log it again with every message.
ALTER TABLE contacts ADD COLUMN their_timer BLOB;
