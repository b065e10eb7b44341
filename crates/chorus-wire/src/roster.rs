//! Roster entries: the signed, hash-chained list of an identity's devices.
//!
//! Decoding checks sizes, key lengths and points, and the signature under the entry's
//! stated signer over the exact entry bytes. Whether that signer may sign at this point
//! of the chain, and whether the chain links, is the core's decision (`Roster`), since
//! it depends on every earlier entry.

use chorus_crypto::{DeviceDhPublic, DevicePublicKey, RootPublicKey, Signature};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::field;
use crate::limits::MAX_ROSTER_ENTRY_LEN;
use crate::roll::IdentityRoll;
use crate::{WIRE_VERSION, WireError, check_display_name, check_version, decode_bounded, proto};

/// Signature context for roster entries.
pub const ROSTER_CONTEXT: &[u8] = b"Chorus_RosterEntry_v1";

/// Who holds the root key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityLevel {
    /// Every device holds the root key; any device manages the roster.
    SharedRoot,
    /// The root key stays on the first device, which alone manages the roster.
    PrimaryRoot,
}

/// What a roster entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RosterBody {
    /// The first entry: the identity and its first device.
    Genesis {
        /// The identity's root key.
        root: RootPublicKey,
        /// The first device's signing key.
        device: DevicePublicKey,
        /// The first device's X25519 key.
        device_dh: DeviceDhPublic,
        /// Who holds the root key.
        level: SecurityLevel,
        /// The first device's name.
        name: String,
    },
    /// A device joins.
    DeviceAuthorized {
        /// Its signing key.
        device: DevicePublicKey,
        /// Its X25519 key.
        device_dh: DeviceDhPublic,
        /// Its name.
        name: String,
    },
    /// A device leaves (lost, sold, compromised). The relay drops its credential
    /// only on this entry, signed as any roster entry must be.
    DeviceRevoked {
        /// Its signing key.
        device: DevicePublicKey,
    },
    /// `primary-root`: the root key, and with it the roster, moves to this current
    /// device (the device that recovered the identity from its recovery code).
    PrimaryMoved {
        /// The new primary's signing key.
        device: DevicePublicKey,
    },
    /// `primary-root`: the recovery key's public half, to which every device seals the
    /// log's epoch key for the device that may one day recover the identity.
    RecoveryKeySet {
        /// The X25519 key derived from the recovery code.
        key: DeviceDhPublic,
        /// The relay slot (derived from the code) the kit is kept under: the relay
        /// takes a slot for the log only on this root-signed entry.
        slot: [u8; 32],
        /// SHA-256 of the sealed kit: the entry lets the relay keep that kit and no
        /// other, so replaying it (every device holds it) cannot swap the kit.
        kit: [u8; 32],
    },
    /// The identity rolls its root key (`chorus identity roll`): signed by the root it
    /// replaces, which signs nothing more from here on.
    RootRolled {
        /// The continuity statement contacts verify.
        roll: IdentityRoll,
    },
    /// The security level changes (`chorus security set`).
    LevelChanged {
        /// The new level.
        level: SecurityLevel,
        /// `primary-root`: the device that keeps the root; `None` in `shared-root`.
        primary: Option<DevicePublicKey>,
    },
}

/// A decoded roster entry whose signature verifies under its stated signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterEntry {
    /// The identity's log.
    pub log_id: [u8; 32],
    /// Position in the chain.
    pub index: u64,
    /// SHA-256 of the previous entry's bytes (`None` for the genesis).
    pub prev_hash: Option<[u8; 32]>,
    /// The author's clock.
    pub timestamp_ms: u64,
    /// What it says.
    pub body: RosterBody,
    /// The Ed25519 key that signed it (root or device; the core decides if allowed).
    pub signer: [u8; 32],
    /// SHA-256 of the entry bytes: what the next entry's `prev_hash` must be.
    pub hash: [u8; 32],
    bytes: Vec<u8>,
}

fn level_from(v: i32) -> Result<SecurityLevel, WireError> {
    match proto::SecurityLevel::try_from(v) {
        Ok(proto::SecurityLevel::SharedRoot) => Ok(SecurityLevel::SharedRoot),
        Ok(proto::SecurityLevel::PrimaryRoot) => Ok(SecurityLevel::PrimaryRoot),
        Err(_) => Err(WireError::InvalidText {
            field: "roster.genesis.level",
            reason: "unknown security level",
        }),
    }
}

fn level_to(level: SecurityLevel) -> proto::SecurityLevel {
    match level {
        SecurityLevel::SharedRoot => proto::SecurityLevel::SharedRoot,
        SecurityLevel::PrimaryRoot => proto::SecurityLevel::PrimaryRoot,
    }
}

impl RosterEntry {
    /// Decodes a signed entry and verifies its signature under its stated signer.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let signed: proto::SignedRosterEntry =
            decode_bounded("roster entry", bytes, MAX_ROSTER_ENTRY_LEN)?;
        let p: proto::RosterEntry =
            decode_bounded("roster entry", &signed.entry, MAX_ROSTER_ENTRY_LEN)?;
        check_version("roster entry", p.version)?;
        let log_id = <[u8; 32]>::try_from(&p.log_id[..]).map_err(|_| WireError::InvalidText {
            field: "roster.log_id",
            reason: "must be 32 bytes",
        })?;
        let prev_hash = match p.prev_hash.len() {
            0 => None,
            32 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(&p.prev_hash);
                Some(h)
            }
            _ => {
                return Err(WireError::InvalidText {
                    field: "roster.prev_hash",
                    reason: "must be empty or 32 bytes",
                });
            }
        };
        let body = match p.body.ok_or(WireError::MissingField("roster.body"))? {
            proto::roster_entry::Body::Genesis(g) => {
                check_display_name("roster.genesis.first_device_name", &g.first_device_name)?;
                RosterBody::Genesis {
                    root: field(
                        "roster.genesis.root_key",
                        RootPublicKey::from_slice(&g.root_key),
                    )?,
                    device: field(
                        "roster.genesis.first_device",
                        DevicePublicKey::from_slice(&g.first_device),
                    )?,
                    device_dh: field(
                        "roster.genesis.first_device_dh",
                        DeviceDhPublic::from_slice(&g.first_device_dh),
                    )?,
                    level: level_from(g.level)?,
                    name: g.first_device_name,
                }
            }
            proto::roster_entry::Body::DeviceAuthorized(d) => {
                check_display_name("roster.device_authorized.name", &d.name)?;
                RosterBody::DeviceAuthorized {
                    device: field(
                        "roster.device_authorized.device_key",
                        DevicePublicKey::from_slice(&d.device_key),
                    )?,
                    device_dh: field(
                        "roster.device_authorized.device_dh_key",
                        DeviceDhPublic::from_slice(&d.device_dh_key),
                    )?,
                    name: d.name,
                }
            }
            proto::roster_entry::Body::DeviceRevoked(d) => RosterBody::DeviceRevoked {
                device: field(
                    "roster.device_revoked.device_key",
                    DevicePublicKey::from_slice(&d.device_key),
                )?,
            },
            proto::roster_entry::Body::PrimaryMoved(d) => RosterBody::PrimaryMoved {
                device: field(
                    "roster.primary_moved.device_key",
                    DevicePublicKey::from_slice(&d.device_key),
                )?,
            },
            proto::roster_entry::Body::LevelChanged(l) => {
                let level = level_from(l.level)?;
                let primary = match (level, l.primary.is_empty()) {
                    (SecurityLevel::SharedRoot, true) => None,
                    (SecurityLevel::PrimaryRoot, false) => Some(field(
                        "roster.level_changed.primary",
                        DevicePublicKey::from_slice(&l.primary),
                    )?),
                    _ => {
                        return Err(WireError::InvalidText {
                            field: "roster.level_changed.primary",
                            reason: "names a device exactly when the level is primary-root",
                        });
                    }
                };
                RosterBody::LevelChanged { level, primary }
            }
            proto::roster_entry::Body::RootRolled(r) => RosterBody::RootRolled {
                roll: IdentityRoll::from_proto(
                    r.roll
                        .as_ref()
                        .ok_or(WireError::MissingField("roster.root_rolled.roll"))?,
                )?,
            },
            proto::roster_entry::Body::RecoveryKeySet(r) => RosterBody::RecoveryKeySet {
                key: field(
                    "roster.recovery_key_set.recovery_key",
                    DeviceDhPublic::from_slice(&r.recovery_key),
                )?,
                slot: <[u8; 32]>::try_from(&r.slot[..]).map_err(|_| WireError::InvalidText {
                    field: "roster.recovery_key_set.slot",
                    reason: "must be 32 bytes",
                })?,
                kit: <[u8; 32]>::try_from(&r.kit[..]).map_err(|_| WireError::InvalidText {
                    field: "roster.recovery_key_set.kit",
                    reason: "must be 32 bytes",
                })?,
            },
        };
        let signer =
            <[u8; 32]>::try_from(&signed.signer[..]).map_err(|_| WireError::InvalidText {
                field: "roster.signer",
                reason: "must be 32 bytes",
            })?;
        let signature = field("roster.signature", Signature::from_slice(&signed.signature))?;
        // Root and device keys are both Ed25519 with the same verification; the role
        // type only names what the key is for.
        let verifier = field("roster.signer", RootPublicKey::from_slice(&signer))?;
        verifier
            .verify(ROSTER_CONTEXT, &signed.entry, &signature)
            .map_err(|_| WireError::BadSignature("roster entry"))?;
        Ok(Self {
            log_id,
            index: p.index,
            prev_hash,
            timestamp_ms: p.timestamp_ms,
            body,
            signer,
            hash: Sha256::digest(&signed.entry).into(),
            bytes: bytes.to_vec(),
        })
    }

    /// The signed entry as received (what is stored in the log).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Builds and signs an entry. `sign` receives the exact bytes to sign (with the
    /// [`ROSTER_CONTEXT`]) and returns the signer's public key and signature, so the
    /// caller chooses the role of the signing key.
    pub fn sign(
        log_id: [u8; 32],
        index: u64,
        prev_hash: Option<[u8; 32]>,
        timestamp_ms: u64,
        body: &RosterBody,
        sign: impl FnOnce(&[u8]) -> ([u8; 32], Signature),
    ) -> Result<Self, WireError> {
        let body = match body {
            RosterBody::Genesis {
                root,
                device,
                device_dh,
                level,
                name,
            } => proto::roster_entry::Body::Genesis(proto::RosterGenesis {
                root_key: root.as_bytes().to_vec(),
                first_device: device.as_bytes().to_vec(),
                first_device_dh: device_dh.as_bytes().to_vec(),
                level: level_to(*level) as i32,
                first_device_name: name.clone(),
            }),
            RosterBody::DeviceAuthorized {
                device,
                device_dh,
                name,
            } => proto::roster_entry::Body::DeviceAuthorized(proto::DeviceAuthorized {
                device_key: device.as_bytes().to_vec(),
                device_dh_key: device_dh.as_bytes().to_vec(),
                name: name.clone(),
            }),
            RosterBody::DeviceRevoked { device } => {
                proto::roster_entry::Body::DeviceRevoked(proto::DeviceRevoked {
                    device_key: device.as_bytes().to_vec(),
                })
            }
            RosterBody::PrimaryMoved { device } => {
                proto::roster_entry::Body::PrimaryMoved(proto::PrimaryMoved {
                    device_key: device.as_bytes().to_vec(),
                })
            }
            RosterBody::LevelChanged { level, primary } => {
                proto::roster_entry::Body::LevelChanged(proto::LevelChanged {
                    level: level_to(*level) as i32,
                    primary: primary.map(|p| p.as_bytes().to_vec()).unwrap_or_default(),
                })
            }
            RosterBody::RootRolled { roll } => {
                proto::roster_entry::Body::RootRolled(proto::RootRolled {
                    roll: Some(roll.to_proto()),
                })
            }
            RosterBody::RecoveryKeySet { key, slot, kit } => {
                proto::roster_entry::Body::RecoveryKeySet(proto::RecoveryKeySet {
                    recovery_key: key.as_bytes().to_vec(),
                    slot: slot.to_vec(),
                    kit: kit.to_vec(),
                })
            }
        };
        let entry = proto::RosterEntry {
            version: WIRE_VERSION,
            log_id: log_id.to_vec(),
            index,
            prev_hash: prev_hash.map(|h| h.to_vec()).unwrap_or_default(),
            timestamp_ms,
            body: Some(body),
        }
        .encode_to_vec();
        let (signer, signature) = sign(&entry);
        let signed = proto::SignedRosterEntry {
            entry,
            signer: signer.to_vec(),
            signature: signature.as_bytes().to_vec(),
        }
        .encode_to_vec();
        Self::decode(&signed)
    }
}
