-- The display name a contact last told us (`Payload::name`, or the hello's): a change
-- is shown ("alice is now Alice B."), and our name for them follows when it was their
-- old one. NULL until they first say it.
ALTER TABLE contacts ADD COLUMN their_name TEXT;
