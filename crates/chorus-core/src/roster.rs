//! The roster: which devices are the identity (DESIGN §3, §4).
//!
//! The roster is a hash chain of signed entries carried in the identity's log. Entry 0
//! is the genesis (the root key, the first device, the security level); each later
//! entry names its position and the SHA-256 of the previous entry's exact bytes, and is
//! signed by a key allowed to manage the roster at that point:
//!
//! * `shared-root`: the root key (every device holds it);
//! * `primary-root`: the root key, or the primary device's own key — the root stays on
//!   that device, and only it manages the roster. The primary is the first device until
//!   a root-signed `PrimaryMoved` names another (the device that recovered the identity
//!   from its recovery code); from then on the old primary's key signs nothing, and it
//!   can be revoked.
//!
//! A device catching up validates the whole chain with [`Roster::validate_chain`]. Every
//! check happens before any change: [`Roster::apply`] either accepts an entry or returns a
//! typed error and leaves the roster exactly as it was.

use chorus_crypto::{
    CryptoRng, DeviceDhPublic, DeviceDhSecret, DevicePublicKey, DeviceSigningKey, IdentityDhSecret,
    RootPublicKey, RootSigningKey,
};
use chorus_wire::{
    EventKind, IdentityKeys, IdentityRoll, ROSTER_CONTEXT, RosterBody, RosterEntry, SecurityLevel,
    WireError,
};
use zeroize::Zeroizing;

const SHARED_ROOT_AD: &[u8] = b"chorus-shared-root-v1";
const SHARED_IDENTITY_AD: &[u8] = b"chorus-shared-identity-v1";

/// What a sealed box of a rolled identity is bound to: the log, the device and the
/// root it rolled to.
fn shared_identity_ad(log_id: &[u8; 32], device: &[u8; 32], root: &RootPublicKey) -> Vec<u8> {
    [
        SHARED_IDENTITY_AD,
        &log_id[..],
        &device[..],
        root.as_bytes(),
    ]
    .concat()
}

/// The secrets of a rolled identity as one device opens them.
pub struct RolledSecrets {
    /// The new identity DH secret (every device).
    pub dh: IdentityDhSecret,
    /// The new root (a device that holds the root).
    pub root: Option<RootSigningKey>,
}

/// Opens this device's box of an `IdentityShared` record: the identity DH secret, and
/// the root after it if the box holds one, each checked against the roster's last roll
/// (a sibling cannot hand us keys that are not the identity's).
pub fn open_shared_identity(
    roster: &Roster,
    device: &[u8; 32],
    secret: &DeviceDhSecret,
    keys: &[([u8; 32], Vec<u8>)],
) -> Option<RolledSecrets> {
    let identity = roster.identity()?;
    let (_, sealed) = keys.iter().find(|(d, _)| d == device)?;
    let ad = shared_identity_ad(&roster.log_id, device, &roster.root);
    let raw = chorus_crypto::open_sealed(secret, &ad, sealed).ok()?;
    let dh_bytes: Zeroizing<[u8; 32]> = Zeroizing::new(raw.get(..32)?.try_into().ok()?);
    let dh = IdentityDhSecret::from_secret_bytes(&dh_bytes);
    if dh.public_key() != identity.dh {
        return None;
    }
    let root = match raw.get(32..) {
        Some([]) | None => None,
        Some(rest) => {
            let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(rest.try_into().ok()?);
            let root = RootSigningKey::from_secret_bytes(&bytes);
            if root.public_key() != roster.root {
                return None;
            }
            Some(root)
        }
    };
    Some(RolledSecrets { dh, root })
}

/// What a sealed box of the root is bound to: the log and the device.
fn shared_root_ad(log_id: &[u8; 32], device: &[u8; 32]) -> Vec<u8> {
    [SHARED_ROOT_AD, &log_id[..], &device[..]].concat()
}

/// Opens this device's box of a `RootShared` record: the root key, if the box is ours,
/// opens, and holds the roster's root (a sibling cannot hand us another key as the
/// identity's).
pub fn open_shared_root(
    roster: &Roster,
    device: &[u8; 32],
    secret: &DeviceDhSecret,
    keys: &[([u8; 32], Vec<u8>)],
) -> Option<RootSigningKey> {
    let (_, sealed) = keys.iter().find(|(d, _)| d == device)?;
    let raw =
        chorus_crypto::open_sealed(secret, &shared_root_ad(&roster.log_id, device), sealed).ok()?;
    let raw: Zeroizing<[u8; 32]> = Zeroizing::new(raw.as_slice().try_into().ok()?);
    let root = RootSigningKey::from_secret_bytes(&raw);
    (root.public_key() == roster.root).then_some(root)
}

/// Most devices one identity may ever have, revoked ones included (the relay's own
/// bound is the same: a roster that only grows must still be bounded).
pub const MAX_DEVICES: usize = 64;

/// Why a roster entry was refused. Every variant is the fault of whoever produced the
/// entry (a sibling device, or the relay replaying or reordering records).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// The chain does not start with a genesis.
    #[error("the first roster entry is not a genesis")]
    NotGenesis,
    /// A genesis after the first entry.
    #[error("roster entry {index}: a second genesis")]
    SecondGenesis {
        /// The entry's position.
        index: u64,
    },
    /// The entry belongs to another identity's log.
    #[error("roster entry {index}: belongs to another identity's log")]
    WrongLog {
        /// The entry's position.
        index: u64,
    },
    /// The entry is not the next one (replayed, skipped or reordered).
    #[error("roster entry {index}: expected entry {expected} (replayed or reordered)")]
    OutOfOrder {
        /// The position it claims.
        index: u64,
        /// The position expected.
        expected: u64,
    },
    /// `prev_hash` is not the hash of the previous entry.
    #[error("roster entry {index}: does not link to the previous entry (broken hash chain)")]
    BrokenChain {
        /// The entry's position.
        index: u64,
    },
    /// Signed by a key that may not manage the roster.
    #[error("roster entry {index}: signed by a key that may not change the roster")]
    UnauthorizedSigner {
        /// The entry's position.
        index: u64,
    },
    /// The device is already in the roster.
    #[error("roster entry {index}: the device is already authorized")]
    DuplicateDevice {
        /// The entry's position.
        index: u64,
    },
    /// The device was revoked: it can never join again (its key may be in a thief's hands).
    #[error("roster entry {index}: the device was revoked and cannot join again")]
    RevokedDevice {
        /// The entry's position.
        index: u64,
    },
    /// A revocation names a device the roster does not hold.
    #[error("roster entry {index}: revokes a device that is not in the roster")]
    UnknownDevice {
        /// The entry's position.
        index: u64,
    },
    /// A roll that does not leave the identity's current root.
    #[error("roster entry {index}: rolls from another root key than the identity's")]
    RollFromElsewhere {
        /// The entry's position.
        index: u64,
    },
    /// A revocation would leave the identity without the device that holds its root
    /// (`primary-root`) or without any device.
    #[error("roster entry {index}: cannot revoke the primary or the last device")]
    Irrevocable {
        /// The entry's position.
        index: u64,
    },
    /// The roster is full.
    #[error("roster entry {index}: more than {MAX_DEVICES} devices ever (revoked ones count)")]
    TooManyDevices {
        /// The entry's position.
        index: u64,
    },
    /// The entry makes sense only in the other security level (`PrimaryMoved` in
    /// `shared-root`).
    #[error("roster entry {index}: not allowed at this security level")]
    WrongLevel {
        /// The entry's position.
        index: u64,
    },
    /// The bytes are not a valid signed entry (bad signature, bad key, malformed).
    #[error("roster entry: {0}")]
    Wire(#[from] WireError),
}

/// One device of the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterDevice {
    /// Its signing key (its id at the relay).
    pub key: DevicePublicKey,
    /// Its X25519 key, for sealed boxes (epoch keys, provisioning).
    pub dh: DeviceDhPublic,
    /// Its name.
    pub name: String,
    /// The roster entry that added it.
    pub added_index: u64,
    /// The author's clock at that entry.
    pub added_ms: u64,
}

/// The validated roster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roster {
    log_id: [u8; 32],
    root: RootPublicKey,
    level: SecurityLevel,
    devices: Vec<RosterDevice>,
    /// Devices that were revoked, in order, with the revoking entry's clock: they may
    /// never join again.
    revoked: Vec<(DevicePublicKey, u64)>,
    /// `primary-root`: the device that holds the root (the first, until moved).
    primary: Option<DevicePublicKey>,
    /// The recovery key's public half, once set.
    recovery: Option<DeviceDhPublic>,
    /// The identity's public keys as its last roll named them (`None` until a roll:
    /// the genesis names the root alone).
    identity: Option<IdentityKeys>,
    /// Every roll, in order: what contacts are shown to follow the identity.
    rolls: Vec<IdentityRoll>,
    head: [u8; 32],
    next_index: u64,
    /// The genesis author's clock: when the identity was created.
    created_ms: u64,
}

/// The key that signs a new roster entry.
pub enum RosterSigner<'a> {
    /// The root key (either level).
    Root(&'a RootSigningKey),
    /// The primary device's own key (`primary-root` only).
    PrimaryDevice(&'a DeviceSigningKey),
}

impl RosterSigner<'_> {
    fn sign(&self, bytes: &[u8]) -> ([u8; 32], chorus_crypto::Signature) {
        match self {
            RosterSigner::Root(k) => (*k.public_key().as_bytes(), k.sign(ROSTER_CONTEXT, bytes)),
            RosterSigner::PrimaryDevice(k) => {
                (*k.public_key().as_bytes(), k.sign(ROSTER_CONTEXT, bytes))
            }
        }
    }
}

impl Roster {
    /// Creates the genesis entry of a new identity.
    pub fn genesis(
        root: &RootSigningKey,
        log_id: [u8; 32],
        device: DevicePublicKey,
        device_dh: DeviceDhPublic,
        level: SecurityLevel,
        name: &str,
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        let body = RosterBody::Genesis {
            root: root.public_key(),
            device,
            device_dh,
            level,
            name: name.to_owned(),
        };
        Ok(RosterEntry::sign(
            log_id,
            0,
            None,
            timestamp_ms,
            &body,
            |b| RosterSigner::Root(root).sign(b),
        )?)
    }

    /// Starts a roster from its genesis entry.
    pub fn from_genesis(log_id: [u8; 32], entry: &RosterEntry) -> Result<Self, RosterError> {
        let RosterBody::Genesis {
            root,
            device,
            device_dh,
            level,
            name,
        } = &entry.body
        else {
            return Err(RosterError::NotGenesis);
        };
        if entry.index != 0 {
            return Err(RosterError::OutOfOrder {
                index: entry.index,
                expected: 0,
            });
        }
        if entry.log_id != log_id {
            return Err(RosterError::WrongLog { index: 0 });
        }
        if entry.prev_hash.is_some() {
            return Err(RosterError::BrokenChain { index: 0 });
        }
        if entry.signer != *root.as_bytes() {
            return Err(RosterError::UnauthorizedSigner { index: 0 });
        }
        Ok(Self {
            log_id,
            root: *root,
            level: *level,
            devices: vec![RosterDevice {
                key: *device,
                dh: *device_dh,
                name: name.clone(),
                added_index: 0,
                added_ms: entry.timestamp_ms,
            }],
            revoked: Vec::new(),
            primary: (*level == SecurityLevel::PrimaryRoot).then_some(*device),
            recovery: None,
            identity: None,
            rolls: Vec::new(),
            head: entry.hash,
            next_index: 1,
            created_ms: entry.timestamp_ms,
        })
    }

    /// Validates a whole chain (a device catching up) and returns the roster it builds.
    pub fn validate_chain(log_id: [u8; 32], entries: &[Vec<u8>]) -> Result<Self, RosterError> {
        let (first, rest) = entries.split_first().ok_or(RosterError::NotGenesis)?;
        let mut roster = Self::from_genesis(log_id, &RosterEntry::decode(first)?)?;
        for bytes in rest {
            roster.apply(&RosterEntry::decode(bytes)?)?;
        }
        Ok(roster)
    }

    /// Checks that `entry` may come next, without changing anything.
    pub fn check(&self, entry: &RosterEntry) -> Result<(), RosterError> {
        let index = entry.index;
        if entry.log_id != self.log_id {
            return Err(RosterError::WrongLog { index });
        }
        if index != self.next_index {
            return Err(RosterError::OutOfOrder {
                index,
                expected: self.next_index,
            });
        }
        if entry.prev_hash != Some(self.head) {
            return Err(RosterError::BrokenChain { index });
        }
        let by_root = entry.signer == *self.root.as_bytes();
        let by_primary = self.primary.is_some_and(|p| entry.signer == *p.as_bytes());
        if !(by_root || by_primary) {
            return Err(RosterError::UnauthorizedSigner { index });
        }
        match &entry.body {
            RosterBody::Genesis { .. } => Err(RosterError::SecondGenesis { index }),
            RosterBody::DeviceAuthorized { device, .. } => {
                if self.is_authorized(device) {
                    Err(RosterError::DuplicateDevice { index })
                } else if self.is_revoked(device) {
                    Err(RosterError::RevokedDevice { index })
                } else if self.devices.len() + self.revoked.len() >= MAX_DEVICES {
                    Err(RosterError::TooManyDevices { index })
                } else {
                    Ok(())
                }
            }
            RosterBody::DeviceRevoked { device } => {
                let primary = self.primary == Some(*device);
                if !self.is_authorized(device) {
                    Err(RosterError::UnknownDevice { index })
                } else if primary || self.devices.len() <= 1 {
                    Err(RosterError::Irrevocable { index })
                } else {
                    Ok(())
                }
            }
            // Only the root moves the root: a primary's own key (perhaps in a thief's
            // hands, the very reason for moving) cannot.
            RosterBody::PrimaryMoved { .. }
            | RosterBody::RecoveryKeySet { .. }
            | RosterBody::LevelChanged { .. }
            | RosterBody::RootRolled { .. }
                if !by_root =>
            {
                Err(RosterError::UnauthorizedSigner { index })
            }
            RosterBody::LevelChanged { level, primary } => {
                if *level == self.level {
                    Err(RosterError::WrongLevel { index })
                } else if primary.is_some_and(|p| !self.is_authorized(&p)) {
                    Err(RosterError::UnknownDevice { index })
                } else {
                    Ok(())
                }
            }
            RosterBody::PrimaryMoved { device } => {
                if self.level != SecurityLevel::PrimaryRoot {
                    Err(RosterError::WrongLevel { index })
                } else if !self.is_authorized(device) {
                    Err(RosterError::UnknownDevice { index })
                } else {
                    Ok(())
                }
            }
            RosterBody::RootRolled { roll } if roll.old_root != self.root => {
                Err(RosterError::RollFromElsewhere { index })
            }
            RosterBody::RecoveryKeySet { .. } | RosterBody::RootRolled { .. } => Ok(()),
        }
    }

    /// Applies the next entry, or refuses it and changes nothing.
    pub fn apply(&mut self, entry: &RosterEntry) -> Result<(), RosterError> {
        self.check(entry)?;
        match &entry.body {
            RosterBody::Genesis { .. } => {}
            RosterBody::DeviceAuthorized {
                device,
                device_dh,
                name,
            } => self.devices.push(RosterDevice {
                key: *device,
                dh: *device_dh,
                name: name.clone(),
                added_index: entry.index,
                added_ms: entry.timestamp_ms,
            }),
            RosterBody::DeviceRevoked { device } => {
                self.devices.retain(|d| d.key != *device);
                self.revoked.push((*device, entry.timestamp_ms));
            }
            RosterBody::PrimaryMoved { device } => self.primary = Some(*device),
            RosterBody::RecoveryKeySet { key, .. } => self.recovery = Some(*key),
            RosterBody::RootRolled { roll } => {
                self.root = roll.new_identity.root;
                self.identity = Some(roll.new_identity.clone());
                self.rolls.push(roll.clone());
            }
            RosterBody::LevelChanged { level, primary } => {
                self.level = *level;
                self.primary = *primary;
            }
        }
        self.head = entry.hash;
        self.next_index += 1;
        Ok(())
    }

    /// Builds and signs the entry that authorizes a new device (not yet applied).
    pub fn authorize(
        &self,
        signer: &RosterSigner<'_>,
        device: DevicePublicKey,
        device_dh: DeviceDhPublic,
        name: &str,
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        let body = RosterBody::DeviceAuthorized {
            device,
            device_dh,
            name: name.to_owned(),
        };
        self.next_entry(signer, &body, timestamp_ms)
    }

    /// Builds and signs the entry that revokes `device` (not yet applied).
    pub fn revoke(
        &self,
        signer: &RosterSigner<'_>,
        device: DevicePublicKey,
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        self.next_entry(signer, &RosterBody::DeviceRevoked { device }, timestamp_ms)
    }

    /// Builds and signs the entry that makes `device` the primary (not yet applied).
    pub fn move_primary(
        &self,
        root: &RootSigningKey,
        device: DevicePublicKey,
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        let body = RosterBody::PrimaryMoved { device };
        self.next_entry(&RosterSigner::Root(root), &body, timestamp_ms)
    }

    /// Builds and signs the entry that changes the security level (not yet applied):
    /// to `primary-root` with `primary` keeping the root, or to `shared-root`.
    pub fn change_level(
        &self,
        root: &RootSigningKey,
        primary: Option<DevicePublicKey>,
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        let level = match primary {
            Some(_) => SecurityLevel::PrimaryRoot,
            None => SecurityLevel::SharedRoot,
        };
        let body = RosterBody::LevelChanged { level, primary };
        self.next_entry(&RosterSigner::Root(root), &body, timestamp_ms)
    }

    /// The record that gives every current device the root (`security set
    /// shared-root`, appended right after the entry that changes the level).
    pub fn share_root<R: CryptoRng + ?Sized>(
        &self,
        root: &RootSigningKey,
        rng: &mut R,
    ) -> EventKind {
        let secret = root.to_secret_bytes();
        let keys = self
            .devices
            .iter()
            .map(|d| {
                let device = *d.key.as_bytes();
                let ad = shared_root_ad(&self.log_id, &device);
                // Roster devices' X25519 keys were checked when they joined.
                let sealed = chorus_crypto::seal(&d.dh, &ad, &secret[..], rng).unwrap_or_default();
                (device, sealed)
            })
            .collect();
        EventKind::RootShared { keys }
    }

    /// Builds and signs the entry that rolls the identity to `new_root` and `dh` (not
    /// yet applied), with the continuity statement both roots sign.
    pub fn roll(
        &self,
        old_root: &RootSigningKey,
        new_root: &RootSigningKey,
        dh: &IdentityDhSecret,
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        let keys = IdentityKeys::sign(new_root, dh.public_key());
        let roll = IdentityRoll::sign(old_root, new_root, keys);
        let body = RosterBody::RootRolled { roll };
        self.next_entry(&RosterSigner::Root(old_root), &body, timestamp_ms)
    }

    /// The record that gives every current device the rolled identity (appended right
    /// after the roll's entry, once it is applied): the DH secret to every device, and
    /// the root after it to those that hold the root (every device in `shared-root`,
    /// the primary in `primary-root`).
    pub fn share_identity<R: CryptoRng + ?Sized>(
        &self,
        root: &RootSigningKey,
        dh: &IdentityDhSecret,
        rng: &mut R,
    ) -> EventKind {
        let keys = self
            .devices
            .iter()
            .map(|d| {
                let device = *d.key.as_bytes();
                let mut secret = Zeroizing::new(Vec::with_capacity(64));
                secret.extend_from_slice(&dh.to_secret_bytes()[..]);
                if self.primary.is_none_or(|p| p == d.key) {
                    secret.extend_from_slice(&root.to_secret_bytes()[..]);
                }
                let ad = shared_identity_ad(&self.log_id, &device, &self.root);
                // Roster devices' X25519 keys were checked when they joined.
                let sealed = chorus_crypto::seal(&d.dh, &ad, &secret, rng).unwrap_or_default();
                (device, sealed)
            })
            .collect();
        EventKind::IdentityShared { keys }
    }

    /// Builds and signs the entry that sets the recovery key (not yet applied).
    pub fn set_recovery_key(
        &self,
        root: &RootSigningKey,
        key: DeviceDhPublic,
        (slot, kit): ([u8; 32], [u8; 32]),
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        let body = RosterBody::RecoveryKeySet { key, slot, kit };
        self.next_entry(&RosterSigner::Root(root), &body, timestamp_ms)
    }

    fn next_entry(
        &self,
        signer: &RosterSigner<'_>,
        body: &RosterBody,
        timestamp_ms: u64,
    ) -> Result<RosterEntry, RosterError> {
        let entry = RosterEntry::sign(
            self.log_id,
            self.next_index,
            Some(self.head),
            timestamp_ms,
            body,
            |b| signer.sign(b),
        )?;
        self.check(&entry)?;
        Ok(entry)
    }

    /// Whether `device` is in the roster.
    pub fn is_authorized(&self, device: &DevicePublicKey) -> bool {
        self.devices.iter().any(|d| d.key == *device)
    }

    /// [`Self::is_authorized`] for a device named by its key's bytes (a record's
    /// author), without decoding the key.
    pub fn is_authorized_id(&self, device: &[u8; 32]) -> bool {
        self.devices.iter().any(|d| d.key.as_bytes() == device)
    }

    /// When the identity was created (the genesis author's clock).
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// How many devices were ever revoked.
    pub fn revoked_count(&self) -> u64 {
        self.revoked.len() as u64
    }

    /// Whether `device` was revoked.
    pub fn is_revoked(&self, device: &DevicePublicKey) -> bool {
        self.revoked.iter().any(|(d, _)| d == device)
    }

    /// The revoked devices in the order they were revoked, each with the revoking
    /// entry's clock (ms since the Unix epoch).
    pub fn revoked(&self) -> &[(DevicePublicKey, u64)] {
        &self.revoked
    }

    /// The devices, in the order they joined.
    pub fn devices(&self) -> &[RosterDevice] {
        &self.devices
    }

    /// The identity's root key.
    pub fn root(&self) -> &RootPublicKey {
        &self.root
    }

    /// `primary-root`: the device that holds the root key.
    pub fn primary(&self) -> Option<&DevicePublicKey> {
        self.primary.as_ref()
    }

    /// The recovery key's public half, once a recovery code was set up.
    pub fn recovery_key(&self) -> Option<&DeviceDhPublic> {
        self.recovery.as_ref()
    }

    /// The identity's public keys as its last roll named them (`None` before any).
    pub fn identity(&self) -> Option<&IdentityKeys> {
        self.identity.as_ref()
    }

    /// Every roll of the identity's root, oldest first.
    pub fn rolls(&self) -> &[IdentityRoll] {
        &self.rolls
    }

    /// Who holds the root key.
    pub fn level(&self) -> SecurityLevel {
        self.level
    }

    /// The hash the next entry must link to.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// The position of the next entry.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }
}
