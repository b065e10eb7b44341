//! Who may change a log's device credentials: the identity's root, as its genesis
//! names it (or, in `primary-root`, the primary device it names).
//!
//! The relay cannot read the log, but the roster genesis given at creation is a
//! signed, public statement of the identity's root key and first device. Adding or
//! revoking a device credential needs a roster entry (`DeviceAuthorized` or
//! `DeviceRevoked`) for exactly that device and log, signed by a key the genesis
//! allows to manage the roster. A session token alone proves only that the caller
//! is *some* current device; without this check any device, or a thief holding one
//! device, could lock the others out (the primary included) forever.
//!
//! The relay checks the signature and the signer, not the entry's place in the
//! chain (it does not fold the log). Replaying a proof does nothing new: an added
//! device is added once, and a revoked device can never be added again.
//!
//! In `primary-root` the primary's own key signs only while the primary is a current
//! device. The root may revoke the primary (`chorus recover` on a new device does, after
//! the primary was lost); from then on the lost device's key authorizes nothing here,
//! whoever holds it. The recovery slot, where a lost primary's identity comes back
//! from, is set on the root's signature alone.

use chorus_wire::{RosterBody, RosterEntry, SecurityLevel};

use crate::api::Id32;
use crate::error::ApiError;

/// What a device-credential change asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Register a device.
    Add,
    /// Revoke a device.
    Revoke,
}

/// What a roll shown to the relay asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Roll {
    /// Move the log's root to this key.
    To([u8; 32]),
    /// The log already follows the root this roll names (a retry): nothing.
    Already,
}

/// The keys a log's genesis (and its rolls since) allow to manage its devices.
pub(crate) struct Authority {
    log_id: Id32,
    /// The root the genesis names.
    genesis_root: [u8; 32],
    /// The root now: the genesis's, or the last the identity rolled to.
    root: [u8; 32],
    /// `primary-root`: the first device may sign too, while it is not revoked.
    primary: Option<[u8; 32]>,
    first_device: [u8; 32],
}

impl Authority {
    /// Reads a genesis: `400 bad_genesis` unless it is a root-signed genesis of
    /// `log_id`.
    pub(crate) fn from_genesis(log_id: Id32, genesis: &[u8]) -> Result<Self, ApiError> {
        let bad = || ApiError::invalid("bad_genesis");
        let entry = RosterEntry::decode(genesis).map_err(|_| bad())?;
        let RosterBody::Genesis {
            root,
            device,
            level,
            ..
        } = &entry.body
        else {
            return Err(bad());
        };
        if entry.index != 0
            || entry.prev_hash.is_some()
            || entry.log_id != log_id.0
            || entry.signer != *root.as_bytes()
        {
            return Err(bad());
        }
        Ok(Authority {
            log_id,
            genesis_root: *root.as_bytes(),
            root: *root.as_bytes(),
            primary: (*level == SecurityLevel::PrimaryRoot).then_some(*device.as_bytes()),
            first_device: *device.as_bytes(),
        })
    }

    /// The same authority once the identity rolled to `root` (as the relay stored it:
    /// `500` if the row does not hold a key).
    pub(crate) fn rolled_to(self, root: Option<&[u8]>) -> Result<Self, ApiError> {
        let Some(root) = root else { return Ok(self) };
        let root = <[u8; 32]>::try_from(root)
            .map_err(|_| ApiError::internal(&"a stored root is not a key"))?;
        Ok(Self { root, ..self })
    }

    /// `(genesis root, current root)`, as the store compares them.
    pub(crate) fn roots(&self) -> ([u8; 32], [u8; 32]) {
        (self.genesis_root, self.root)
    }

    /// Checks that `proof` is a `RootRolled` entry of this log signed by its current
    /// root: `400 bad_authorization` if it is not such an entry, `403 not_authorized`
    /// if another key signed it (a root already rolled away from signs nothing more:
    /// in `shared-root` a thief holding the old root cannot follow the owner's roll
    /// with one of its own). A replay of the roll that made the current root is
    /// [`Roll::Already`].
    pub(crate) fn check_roll(&self, proof: &[u8]) -> Result<Roll, ApiError> {
        let bad = || ApiError::invalid("bad_authorization");
        let entry = RosterEntry::decode(proof).map_err(|_| bad())?;
        let RosterBody::RootRolled { roll } = &entry.body else {
            return Err(bad());
        };
        if entry.log_id != self.log_id.0 || entry.signer != *roll.old_root.as_bytes() {
            return Err(bad());
        }
        let new = *roll.new_identity.root.as_bytes();
        if new == self.root {
            return Ok(Roll::Already);
        }
        if entry.signer != self.root {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "not_authorized",
            ));
        }
        Ok(Roll::To(new))
    }

    /// The same authority once the first device was revoked: its key signs nothing.
    pub(crate) fn first_device_revoked(self) -> Self {
        Self {
            primary: None,
            ..self
        }
    }

    /// The device the genesis names as the first.
    pub(crate) fn first_device(&self) -> Id32 {
        Id32(self.first_device)
    }

    /// Checks that `proof` is the root-signed `RecoveryKeySet` entry of this log naming
    /// `slot` and the SHA-256 of exactly `kit`: `400 bad_authorization` if it is not such
    /// an entry, `403 not_authorized` if another key signed it. Only the root (never a
    /// primary's device key) sets the recovery slot, and a replayed entry (every device
    /// holds it) cannot bring another kit.
    pub(crate) fn check_recovery(
        &self,
        slot: Id32,
        kit: &[u8],
        proof: &[u8],
    ) -> Result<(), ApiError> {
        use sha2::{Digest, Sha256};
        let bad = || ApiError::invalid("bad_authorization");
        let entry = RosterEntry::decode(proof).map_err(|_| bad())?;
        let hash: [u8; 32] = Sha256::digest(kit).into();
        match &entry.body {
            RosterBody::RecoveryKeySet {
                slot: named,
                kit: kit_hash,
                ..
            } if *named == slot.0 && *kit_hash == hash && entry.log_id == self.log_id.0 => {}
            _ => return Err(bad()),
        }
        if entry.signer != self.root {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "not_authorized",
            ));
        }
        Ok(())
    }

    /// Checks that `proof` authorizes `change` of `device` in this log:
    /// `400 bad_authorization` if it is not a signed entry of this log for exactly
    /// this change and device, `403 not_authorized` if its signer may not manage the
    /// roster.
    pub(crate) fn check(&self, change: Change, device: Id32, proof: &[u8]) -> Result<(), ApiError> {
        let bad = || ApiError::invalid("bad_authorization");
        let entry = RosterEntry::decode(proof).map_err(|_| bad())?;
        let named = match (&entry.body, change) {
            // The genesis authorizes the first device (a re-link of it shows the genesis).
            (RosterBody::Genesis { device, .. }, Change::Add)
            | (RosterBody::DeviceAuthorized { device, .. }, Change::Add)
            | (RosterBody::DeviceRevoked { device }, Change::Revoke) => *device.as_bytes(),
            _ => return Err(bad()),
        };
        if entry.log_id != self.log_id.0 || named != device.0 {
            return Err(bad());
        }
        if entry.signer != self.root && Some(entry.signer) != self.primary {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "not_authorized",
            ));
        }
        // The primary cannot revoke itself: only the root moves away from it.
        if change == Change::Revoke && Some(device.0) == self.primary && entry.signer != self.root {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "irrevocable",
            ));
        }
        Ok(())
    }
}
