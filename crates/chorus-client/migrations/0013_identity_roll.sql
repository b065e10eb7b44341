-- Identity rolls (`chorus identity roll`), ours and our contacts'.

-- 1: this device folded a roll it has not finished yet (shown the relay; on a device
-- that holds the root, the directory moved and the recovery kit sealed again).
ALTER TABLE identity ADD COLUMN roll_due INTEGER NOT NULL DEFAULT 0;

-- Our root key this contact answered holding (`roll_seen`): our rolls travel in every
-- message to them until it is our current root.
ALTER TABLE contacts ADD COLUMN roll_acked BLOB;
-- Their root as we now hold it, owed to them in `roll_seen` while their last message
-- carried rolls.
ALTER TABLE contacts ADD COLUMN roll_answer BLOB;
-- Two different rolls from one of their roots: the identity (encoded IdentityKeys) the
-- roll we did not follow names. The person is asked to compare safety numbers again.
ALTER TABLE contacts ADD COLUMN compromised BLOB;

-- Every roll step followed for a contact (`contacts.root_key`, their first root).
CREATE TABLE contact_rolls (
    contact  BLOB NOT NULL,
    old_root BLOB NOT NULL,
    new_root BLOB NOT NULL,
    PRIMARY KEY (contact, old_root)
);
