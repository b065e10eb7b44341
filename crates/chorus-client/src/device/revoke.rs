//! Revoking a device (DESIGN §3): a root-signed `DeviceRevoked` roster entry, appended
//! to the log guarded on the roster stream, then shown to the relay, which drops the
//! device's credential on that signed proof alone.
//!
//! From the fold of that entry on, every device refuses the revoked device's records,
//! and the relay refuses its logins (`RelayError::NotRegistered`); the directory's
//! prekeys are all replaced, since the revoked device holds every private half minted
//! before (escrowed in the log). The proof can be shown
//! again: if the relay could not be reached, running the command again finishes the
//! job. The log then moves to a new epoch key sealed to the remaining devices only
//! (`chorus_core`'s `epoch` module; any device finishes a rotation that did not follow
//! its revocation). What the revoked device knows of the sessions is taken from it by a
//! forced DH step toward every contact (`Session::begin_heal`, decided in the core's
//! send and fold), and every contact gets a new mailbox to write to, announced in-band.

use chorus_core::RosterSigner;
use chorus_crypto::DevicePublicKey;
use chorus_relay_api::Id32;
use chorus_wire::{EventKind, RosterBody, RosterEntry};

use super::Device;
use crate::ClientError;
use crate::log::{APPEND_ATTEMPTS, Appended, Pending, ROSTER_STREAM};
use crate::store::log_state::{load_roster, roster_entries};

/// A device the roster holds or held.
struct Known {
    key: DevicePublicKey,
    name: String,
    /// The entry that revoked it, if one did.
    revoked_by: Option<Vec<u8>>,
}

/// A revoked device, as `chorus devices revoke` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The name it was linked with.
    pub name: String,
    /// Its id (hex, 8 bytes, as `chorus devices` shows it).
    pub id: String,
    /// It was revoked before (this run only showed the relay the proof again).
    pub already: bool,
}

/// A device of the identity, found by what a user typed (see [`Device::find_device`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundDevice {
    /// The name it was linked with.
    pub name: String,
    /// Its whole id (hex of its signing key).
    pub id: String,
    /// It was revoked already.
    pub revoked: bool,
    /// It is the device running this.
    pub this_device: bool,
}

impl Device {
    /// The device `given` means — its name (exactly, else ignoring case) or the start of
    /// its id (at least 4 hex digits) — among every device the roster holds or held, as
    /// folded; for a confirmation that names it before [`Self::revoke_device`].
    pub async fn find_device(&self, given: &str) -> Result<FoundDevice, ClientError> {
        let k = self.known_device(given).await?;
        Ok(FoundDevice {
            name: k.name,
            id: hex::encode(k.key.as_bytes()),
            revoked: k.revoked_by.is_some(),
            this_device: k.key.as_bytes() == &self.log.keys.device,
        })
    }

    /// Renames the device `given` names (as [`Self::find_device`]) to `name` on every
    /// device of the identity (a `DeviceRenamed` register in the log, the last writer
    /// wins). Any device can rename any device of the identity, itself included.
    /// Returns the old and the new name.
    pub async fn rename_device(
        &self,
        given: &str,
        name: &str,
    ) -> Result<(String, String), ClientError> {
        let name = chorus_wire::normalize_display_name(name);
        chorus_wire::check_display_name("device name", &name)?;
        self.sync_log().await?;
        let k = self.known_device(given).await?;
        if k.revoked_by.is_some() {
            return Err(ClientError::UnknownDevice(given.to_owned()));
        }
        if k.name != name {
            self.append(vec![crate::log::Pending::free(
                chorus_wire::EventKind::DeviceRenamed {
                    device: *k.key.as_bytes(),
                    name: name.clone(),
                },
            )])
            .await?;
        }
        Ok((k.name, name))
    }

    /// The device `given` names, checked as one this device may revoke now (it holds
    /// the root key, the device is another one), the log folded first: what a
    /// confirmation names before [`Self::revoke_device`].
    pub async fn device_to_revoke(&self, given: &str) -> Result<FoundDevice, ClientError> {
        if !self.holds_root() {
            return Err(ClientError::NotPrimary("revoke devices"));
        }
        self.sync_log().await?;
        let found = self.find_device(given).await?;
        if found.this_device {
            return Err(ClientError::RevokeThisDevice);
        }
        Ok(found)
    }

    /// Revokes the device `given` names — its whole id (as [`FoundDevice::id`]; nothing
    /// else can match it), its name (exactly, else ignoring case) or the start of its id
    /// (at least 4 hex digits) — on every device of the identity and at
    /// the relay. Needs the root key (any device in `shared-root`, the primary in
    /// `primary-root`); a device cannot revoke itself.
    pub async fn revoke_device(&self, given: &str) -> Result<Revoked, ClientError> {
        let me = self.me();
        let root = me
            .identity
            .root()
            .ok_or(ClientError::NotPrimary("revoke devices"))?;
        self.sync_log().await?;
        for _ in 0..APPEND_ATTEMPTS {
            let target = self.known_device(given).await?;
            if target.key.as_bytes() == &self.log.keys.device {
                return Err(ClientError::RevokeThisDevice);
            }
            let (entry, already) = match target.revoked_by {
                Some(entry) => (entry, true),
                None => {
                    let mut conn = self.store.pool().acquire().await?;
                    let roster = load_roster(&mut conn, &self.log.keys.log_id).await?;
                    drop(conn);
                    let entry = roster
                        .revoke(
                            &RosterSigner::Root(root),
                            target.key,
                            u64::try_from(self.now()).unwrap_or(0),
                        )
                        .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))?;
                    let entry = entry.as_bytes().to_vec();
                    let (outcome, _) = self
                        .append(vec![Pending::guarded(
                            EventKind::Roster {
                                entry: entry.clone(),
                            },
                            ROSTER_STREAM.to_vec(),
                            None,
                        )])
                        .await?;
                    if outcome != Appended::Done {
                        // Another device changed the roster first: decide again on it.
                        continue;
                    }
                    (entry, false)
                }
            };
            self.relay
                .revoke_device(Id32(*target.key.as_bytes()), &entry)
                .await?;
            // The revoked device holds the epoch key: the log moves to one it never
            // receives, before anything more is written to it.
            self.log.rotate_if_due().await?;
            crate::handle::failpoint("revoke-before-renewal");
            // Prekeys and mailboxes the revoked device knew are replaced.
            self.renew_if_due().await?;
            // The recovery state moves to the new epoch key at once (best effort: every
            // sync retries), so a recovery can read past the rotation.
            if let Err(e) = self.refresh_recovery_if_due().await {
                tracing::warn!(error = %e, "could not write the recovery state");
            }
            return Ok(Revoked {
                name: target.name,
                id: hex::encode(&target.key.as_bytes()[..8]),
                already,
            });
        }
        Err(ClientError::Contended)
    }

    /// After a revocation (the core's `renewal_due`): replaces every prekey the
    /// directory hands out — the revoked device holds every private half minted so far
    /// (they are escrowed in the log) — and then gives every contact a new mailbox
    /// ([`Self::replace_mailboxes`]). Run by `revoke` and by every `sync`, so a
    /// revocation whose device stopped midway is finished by the next device that
    /// syncs. Prekeys are signed by the root key: in `primary-root` only the primary
    /// renews, as only it revokes.
    pub(crate) async fn renew_if_due(&self) -> Result<(), ClientError> {
        if !self.holds_root() || !self.log.renewal_due().await? {
            return Ok(());
        }
        self.supply_prekeys(true).await?;
        self.replace_mailboxes().await
    }

    /// Gives every contact a new mailbox to write to — after a revocation, since the
    /// revoked device knew the old ones, or whenever mailbox ids may have leaked:
    /// logged (`MailboxesReplaced`, guarded on the roster stream, so two devices never
    /// both do it), so every device reads the new ones, and announced to each contact
    /// in-band by our hello, which goes with every message until the contact writes
    /// there. The old mailbox is still read, for what is on its way.
    pub async fn replace_mailboxes(&self) -> Result<(), ClientError> {
        for _ in 0..APPEND_ATTEMPTS {
            let plan = self.log.plan_renewal().await?;
            let (outcome, _) = self
                .append(plan.into_iter().map(Pending::from).collect())
                .await?;
            if outcome == Appended::Done {
                // Best effort: an unregistered mailbox is registered before any hello
                // naming it leaves (`send_now`), and retried on every sync.
                for e in self.register_pending().await? {
                    tracing::debug!(error = %e, "a new mailbox is not registered yet");
                }
                return Ok(());
            }
        }
        Err(ClientError::Contended)
    }

    /// The device `given` means among every device the roster holds or held.
    async fn known_device(&self, given: &str) -> Result<Known, ClientError> {
        let mut conn = self.store.pool().acquire().await?;
        let entries = roster_entries(&mut conn).await?;
        drop(conn);
        let mut known: Vec<Known> = Vec::new();
        for bytes in entries {
            let entry = RosterEntry::decode(&bytes)
                .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))?;
            match entry.body {
                RosterBody::Genesis { device, name, .. }
                | RosterBody::DeviceAuthorized { device, name, .. } => known.push(Known {
                    key: device,
                    name,
                    revoked_by: None,
                }),
                RosterBody::DeviceRevoked { device } => {
                    if let Some(k) = known.iter_mut().find(|k| k.key == device) {
                        k.revoked_by = Some(bytes);
                    }
                }
                RosterBody::PrimaryMoved { .. }
                | RosterBody::RecoveryKeySet { .. }
                | RosterBody::LevelChanged { .. }
                | RosterBody::RootRolled { .. } => {}
            }
        }
        // A renamed device goes by its new name.
        let mut conn = self.store.pool().acquire().await?;
        for k in &mut known {
            let renamed = crate::store::log_state::register(
                &mut *conn,
                &chorus_core::device_name_register(k.key.as_bytes()),
            )
            .await?;
            if let Some(name) = renamed.and_then(|v| String::from_utf8(v).ok()) {
                k.name = name;
            }
        }
        drop(conn);
        let id = |k: &Known| hex::encode(k.key.as_bytes());
        // A whole id names one key and nothing else: what a confirmation showed is what
        // gets revoked, even if some device was linked under a name that looks like it.
        if given.len() == 64 {
            let wanted = given.to_lowercase();
            return known
                .into_iter()
                .find(|k| id(k) == wanted)
                .ok_or_else(|| ClientError::UnknownDevice(given.to_owned()));
        }
        let wanted = given.to_lowercase();
        let by_id = given.len() >= 4 && given.bytes().all(|b| b.is_ascii_hexdigit());
        let mut found = Vec::new();
        for k in known {
            let exact = k.name == given;
            let loose = k.name.to_lowercase() == wanted || (by_id && id(&k).starts_with(&wanted));
            if exact || loose {
                found.push(k);
            }
        }
        // An exact name wins over loose matches.
        if found.iter().filter(|k| k.name == given).count() == 1 {
            found.retain(|k| k.name == given);
        }
        match found.len() {
            0 => Err(ClientError::UnknownDevice(given.to_owned())),
            1 => Ok(found.remove(0)),
            _ => Err(ClientError::AmbiguousDevice {
                given: given.to_owned(),
                candidates: found
                    .iter()
                    .map(|k| format!("{} ({})", k.name, &id(k)[..16]))
                    .collect(),
            }),
        }
    }
}
