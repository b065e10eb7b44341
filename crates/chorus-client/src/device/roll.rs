//! Rolling the identity key (`chorus identity roll`), and following a contact's rolls.
//!
//! **Our roll.** After losing a device that held the root (any device in `shared-root`)
//! the identity moves to a new root key and a new identity DH key. One atomic append
//! carries the roster's `RootRolled` entry, signed by the old root, with the continuity
//! statement both roots sign (`chorus_wire::IdentityRoll`), and an `IdentityShared`
//! record sealing the new secrets to every current device (the root only to the devices
//! that hold it). Then, on this device and on every device that folds it (whichever
//! comes first finishes it, as after a revocation): the relay is shown the entry and
//! from then on takes device changes signed by the new root only; the directory moves
//! to the new fingerprint's address with fresh prekeys signed by the new root; and a
//! recovery kit, if there is one, is sealed again with the new root.
//!
//! Sessions go on: the statement travels in every message to a contact until the
//! contact answers with the new root (`roll_seen`).
//!
//! **A contact's roll** is decided by `chorus_core::roll::follow_rolls` against the root
//! we pinned and the steps we followed: followed (their safety number changes, and the
//! person is told it was signed by their previous key), refused as an impostor's (not
//! followed, and the person warned), or —
//! two different rolls from one root — the contact is marked compromised and the
//! person asked to compare safety numbers again.

use chorus_core::roll::{RollVerdict, follow_rolls};
use chorus_crypto::{IdentityDhSecret, RootSigningKey, SafetyNumber};
use chorus_relay_api::Id32;
use chorus_wire::limits::MAX_PAYLOAD_ROLLS;
use chorus_wire::{EventKind, IdentityKeys, IdentityRoll, Payload, RosterBody, RosterEntry};
use sha2::{Digest, Sha256};
use sqlx::SqliteConnection;

use super::Device;
use crate::identity::directory_address;
use crate::store::contacts::ContactRow;
use crate::store::log_state::roster_entries;
use crate::{ClientError, Event};

/// What `identity roll` did.
#[derive(Debug)]
pub struct Rolled {
    /// The identity's new fingerprint.
    pub fingerprint: String,
    /// Its new address (`fingerprint@relay`).
    pub address: String,
}

impl Device {
    /// Rolls the identity to a new root key and identity DH key (see the module
    /// docs). Needs the root key: any device in `shared-root`, the primary in
    /// `primary-root`.
    pub async fn roll_identity(&self) -> Result<Rolled, ClientError> {
        let me = self.me();
        let old = me
            .identity
            .root()
            .ok_or(ClientError::NotPrimary("roll the identity key"))?;
        let (new_root, dh) = {
            let mut rng = self.rng();
            (
                RootSigningKey::generate(&mut rng),
                IdentityDhSecret::generate(&mut rng),
            )
        };
        let now = u64::try_from(self.now()).unwrap_or(0);
        let refused = |e: chorus_core::RosterError| ClientError::Corrupt(format!("roster: {e}"));
        self.append_roster_change(|roster| {
            // A sibling's roll landed first (this device's root is the one it left).
            if *roster.root() != old.public_key() {
                return Err(ClientError::RolledMeanwhile);
            }
            let entry = roster.roll(old, &new_root, &dh, now).map_err(refused)?;
            let mut after = roster.clone();
            after.apply(&entry).map_err(refused)?;
            let shared = after.share_identity(&new_root, &dh, &mut self.rng());
            Ok(vec![
                EventKind::Roster {
                    entry: entry.as_bytes().to_vec(),
                },
                shared,
            ])
        })
        .await?;
        crate::handle::failpoint("roll-before-relay");
        self.finish_roll_if_due().await?;
        Ok(Rolled {
            fingerprint: self.fingerprint().digits(),
            address: self.address(),
        })
    }

    /// Whether every device holds the root (`shared-root`): a revoked device took it
    /// with it, and rolling the identity is worth offering.
    pub async fn root_is_shared(&self) -> Result<bool, ClientError> {
        Ok(self.roster().await?.level() == chorus_wire::SecurityLevel::SharedRoot)
    }

    /// After a roll this device folded: shows the relay the roll, and (on a device
    /// that holds the root) moves the directory to the new address and seals the
    /// recovery kit again. Run by `roll_identity` and by every `sync`, so a roll whose
    /// device stopped midway is finished by the next device that syncs.
    pub(crate) async fn finish_roll_if_due(&self) -> Result<(), ClientError> {
        if !self.store.roll_due().await? {
            return Ok(());
        }
        let mut conn = self.store.pool().acquire().await?;
        let entries = roster_entries(&mut conn).await?;
        drop(conn);
        // Every roll in order (the relay may not have seen an earlier one, if its
        // device stopped before showing it): one the relay is already past is
        // refused as signed by a root it left, which only the last may not be.
        let rolls: Vec<&Vec<u8>> = entries
            .iter()
            .filter(|e| {
                RosterEntry::decode(e)
                    .is_ok_and(|e| matches!(e.body, RosterBody::RootRolled { .. }))
            })
            .collect();
        for (i, entry) in rolls.iter().enumerate() {
            match self.relay.roll_root(entry).await {
                Err(e) if e.code() == Some("not_authorized") && i + 1 < rolls.len() => {}
                other => other?,
            }
        }
        // The directory entries of the roots left: nothing is handed out there any
        // more (a first message to an old address could never be answered), and the
        // addresses stay this log's, so a thief holding an old root cannot claim them.
        for roll in self.roster().await?.rolls() {
            let digits = chorus_crypto::Fingerprint::of(&roll.old_root).digits();
            match self
                .relay
                .withdraw_prekeys(directory_address(&digits))
                .await
            {
                Err(e) if e.code() == Some("not_found") => {}
                other => other?,
            }
        }
        if self.holds_root() {
            self.supply_prekeys(true).await?;
            self.reseal_recovery_kit().await?;
        }
        self.store.clear_roll_due().await
    }

    /// Our rolls a message to `row` carries: the last [`MAX_PAYLOAD_ROLLS`] of the
    /// roster's, until the contact answered with the root we hold now.
    pub(super) fn rolls_for(&self, row: &ContactRow, rolls: &[IdentityRoll]) -> Vec<IdentityRoll> {
        let current = self.me().identity.keys().root;
        if rolls.is_empty() || row.roll_acked.as_deref() == Some(current.as_bytes()) {
            return Vec::new();
        }
        rolls[rolls.len().saturating_sub(MAX_PAYLOAD_ROLLS)..].to_vec()
    }

    /// What a contact's message says about identity rolls, theirs and ours: their
    /// answer to ours (`roll_seen`), and their rolls decided against the root we
    /// pinned. An impostor's rolls are not followed (a warning event; the pin and the
    /// answer stay as they were).
    pub(super) async fn take_rolls(
        &self,
        tx: &mut SqliteConnection,
        name: &str,
        payload: &Payload,
    ) -> Result<Vec<Event>, ClientError> {
        if let Some(seen) = &payload.roll_seen {
            set_contact_roll(tx, name, RollColumn::Acked, Some(seen.as_bytes())).await?;
        }
        if payload.rolls.is_empty() {
            set_contact_roll(tx, name, RollColumn::Answer, None).await?;
            return Ok(Vec::new());
        }
        let (contact, identity, compromised) = contact_roll_state(tx, name).await?;
        let pinned = IdentityKeys::decode(&identity)?;
        let known = followed_steps(tx, &contact).await?;
        let mut events = Vec::new();
        let answer = match follow_rolls(&pinned.root, &known, &payload.rolls) {
            // Not signed by any key of theirs we know: an impostor's keys, or (more
            // rolls than a message carries since we last heard) a chain we cannot
            // follow. Either way the pin stays and nothing is answered; the message
            // itself came over their session and is delivered.
            RollVerdict::Unrelated => {
                events.push(Event::Rejected {
                    reason: format!(
                        "an identity roll from {name:?} not signed by the key you hold for them (an impostor's?): not followed; compare safety numbers with `chorus verify {name}`"
                    ),
                });
                None
            }
            RollVerdict::Unchanged => Some(pinned.root),
            // A compromised contact's keys move no more until the person decides.
            RollVerdict::Rolled { .. } if compromised => None,
            RollVerdict::Rolled { identity, steps } => {
                for (old, new) in steps {
                    sqlx::query(
                        "INSERT OR IGNORE INTO contact_rolls (contact, old_root, new_root)
                         VALUES ($1, $2, $3)",
                    )
                    .bind(&contact[..])
                    .bind(&old[..])
                    .bind(&new[..])
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("UPDATE contacts SET identity = $1 WHERE name = $2")
                    .bind(identity.encode())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                events.push(Event::ContactRolled {
                    contact: name.to_owned(),
                    safety_number: SafetyNumber::new(
                        &self.me().identity.keys().root,
                        &identity.root,
                    )
                    .to_string(),
                });
                Some(identity.root)
            }
            RollVerdict::Conflict { other } => {
                if !compromised {
                    sqlx::query("UPDATE contacts SET compromised = $1 WHERE name = $2")
                        .bind(other.encode())
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    events.push(Event::ContactCompromised {
                        contact: name.to_owned(),
                    });
                }
                None
            }
        };
        let answer = answer.map(|r| r.as_bytes().to_vec());
        set_contact_roll(tx, name, RollColumn::Answer, answer.as_deref()).await?;
        Ok(events)
    }

    /// In `primary-root` with a recovery code: the kit held the root before the roll;
    /// it is sealed again with the new one, under the same recovery key and slot, on a
    /// `RecoveryKeySet` entry the new root signs.
    async fn reseal_recovery_kit(&self) -> Result<(), ClientError> {
        let mut conn = self.store.pool().acquire().await?;
        let entries = roster_entries(&mut conn).await?;
        drop(conn);
        let set = entries
            .iter()
            .rev()
            .find_map(|e| match RosterEntry::decode(e) {
                Ok(RosterEntry {
                    body: RosterBody::RecoveryKeySet { key, slot, .. },
                    signer,
                    ..
                }) => Some((key, slot, signer)),
                _ => None,
            });
        let me = self.me();
        let (Some((key, slot, signer)), Some(root)) = (set, me.identity.root()) else {
            return Ok(());
        };
        if signer == *root.public_key().as_bytes() {
            return Ok(());
        }
        let kit = self.seal_kit(&key, root)?;
        let kit_hash: [u8; 32] = Sha256::digest(&kit).into();
        let now = u64::try_from(self.now()).unwrap_or(0);
        let proof = self
            .roster()
            .await?
            .set_recovery_key(root, key, (slot, kit_hash), now)
            .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))?;
        self.relay
            .put_recovery_kit(Id32(slot), kit, proof.as_bytes())
            .await?;
        self.append_roster_change(|roster| {
            let entry = roster
                .set_recovery_key(root, key, (slot, kit_hash), now)
                .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))?;
            Ok(vec![EventKind::Roster {
                entry: entry.as_bytes().to_vec(),
            }])
        })
        .await?;
        self.refresh_recovery().await.map(|_| ())
    }
}

/// Which of a contact's roll columns to set.
#[derive(Clone, Copy)]
enum RollColumn {
    /// `roll_acked`: our root they answered holding.
    Acked,
    /// `roll_answer`: their root we owe them in `roll_seen`.
    Answer,
}

/// Sets one of a contact's roll columns.
async fn set_contact_roll(
    tx: &mut SqliteConnection,
    name: &str,
    column: RollColumn,
    value: Option<&[u8]>,
) -> Result<(), ClientError> {
    let sql = match column {
        RollColumn::Acked => "UPDATE contacts SET roll_acked = $1 WHERE name = $2",
        RollColumn::Answer => "UPDATE contacts SET roll_answer = $1 WHERE name = $2",
    };
    sqlx::query(sql)
        .bind(value)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A contact's first root (its id), its identity keys as pinned, and whether it is
/// marked compromised.
async fn contact_roll_state(
    tx: &mut SqliteConnection,
    name: &str,
) -> Result<(Vec<u8>, Vec<u8>, bool), ClientError> {
    let (root, identity, compromised): (Vec<u8>, Vec<u8>, bool) = sqlx::query_as(
        "SELECT root_key, identity, compromised IS NOT NULL FROM contacts WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ClientError::UnknownContact(name.to_owned()))?;
    Ok((root, identity, compromised))
}

/// The roll steps followed for a contact.
async fn followed_steps(
    tx: &mut SqliteConnection,
    contact: &[u8],
) -> Result<Vec<chorus_core::roll::RollStep>, ClientError> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT old_root, new_root FROM contact_rolls WHERE contact = $1")
            .bind(contact)
            .fetch_all(&mut *tx)
            .await?;
    rows.into_iter()
        .map(|(o, n)| {
            let key = |k: Vec<u8>| {
                <[u8; 32]>::try_from(k).map_err(|_| ClientError::Corrupt("roll step".into()))
            };
            Ok((key(o)?, key(n)?))
        })
        .collect()
}
