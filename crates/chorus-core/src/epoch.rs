//! Epoch rotation (DESIGN §3, "Revocation"): the log moves to a key the revoked device
//! never sees.
//!
//! Every current device holds the epoch key, so a device that is revoked holds it too,
//! and with the relay's data it could read everything sealed under it. After a
//! revocation the log therefore moves to a new key that only the remaining devices
//! receive. A **rotation** is one log record: sealed under the old key (every device that
//! holds it can read the rotation, including one that was offline through it) and
//! carrying the new epoch in the clear, it holds the new key in a sealed box to each
//! current device's X25519 key (the roster's `device_dh`) and a commitment to it. From
//! the record after it on, everything is sealed under the new key, and the fold refuses
//! anything else; the relay refuses appends under an older epoch than the log's, so a
//! device that missed the rotation never writes under the old key after it.
//!
//! Streams start again in every epoch: their tags are derived from the epoch key, so a
//! revoked device (even with the relay's help) cannot tell which contact a record of the
//! new epoch is about.
//!
//! Whether a rotation is due is the fold's decision ([`Constellation::rotation_due`]):
//! once the roster revoked a device since the current epoch began, or once the log
//! shows a record of a later epoch that no rotation started (a buggy or hostile device
//! wrote ahead; the relay, which takes epochs only forward and one at a time, would
//! refuse everything older from then on, so the log moves past it). Any current device
//! may then append it, guarded on the roster stream, so two devices never both do.

use chorus_crypto::{CryptoRng, DeviceDhSecret, EpochKey};
use chorus_wire::limits::MAX_REPLACED_MAILBOXES;
use chorus_wire::{EpochRotation, EventKind};
use zeroize::Zeroizing;

use crate::fold::{Constellation, ROSTER_STREAM};
use crate::send::Guarded;

const AD_LABEL: &[u8] = b"chorus-epoch-key-v1";

/// Why this device could not take the epoch key a rotation sealed to it. A sibling
/// (or the relay, for a record it forged) produced the rotation; this device cannot
/// read the new epoch until a correct one is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EpochKeyError {
    /// The rotation seals no key to this device.
    #[error("the epoch rotation seals no key to this device")]
    NotSealedToUs,
    /// The box addressed to this device does not open with its key.
    #[error("the epoch key sealed to this device does not open")]
    Unopenable,
    /// The key opened is not the one the rotation commits to (a sibling handed
    /// devices different keys).
    #[error("the epoch key sealed to this device is not the one the rotation commits to")]
    Commitment,
}

/// What a sealed box of the epoch key is bound to: the log, the new epoch and the
/// device, so a box cannot be moved to another log, epoch or device.
fn associated_data(log_id: &[u8; 32], epoch: u32, device: &[u8; 32]) -> Vec<u8> {
    [AD_LABEL, &log_id[..], &epoch.to_be_bytes(), &device[..]].concat()
}

impl Constellation {
    /// The rotation to append when [`Self::rotation_due`]: a fresh key sealed to every
    /// current device, guarded on the roster stream as folded under `held` (the
    /// current epoch's key). The new key itself is not returned: the author takes it
    /// from its own box when it folds the record, as every other device does.
    pub fn plan_rotation<R: CryptoRng + ?Sized>(&self, held: &EpochKey, rng: &mut R) -> Guarded {
        let state = self;
        let key = EpochKey::generate(rng);
        let epoch = state.next_epoch();
        let raw = key.to_bytes();
        let keys = state
            .roster()
            .devices()
            .iter()
            .map(|d| {
                let device = *d.key.as_bytes();
                let ad = associated_data(state.log_id(), epoch, &device);
                // Roster devices' X25519 keys were checked when they joined; a low-order
                // key would have been refused there, so sealing cannot fail.
                let sealed = chorus_crypto::seal(&d.dh, &ad, &raw[..], rng).unwrap_or_default();
                (device, sealed)
            })
            .collect();
        let event = EventKind::EpochRotated(Box::new(EpochRotation {
            epoch,
            revoked: state.roster().revoked_count(),
            commitment: key.commitment(),
            keys,
        }));
        let stream = ROSTER_STREAM.to_vec();
        Guarded {
            event,
            version: state.stream(&held.stream_tag(&stream)).version,
            stream,
        }
    }
}

impl Constellation {
    /// The renewal to append when [`Self::renewal_due`], once the directory's prekeys
    /// are replaced: a new mailbox for every contact (the revoked device knew the old
    /// ones), in events of at most [`MAX_REPLACED_MAILBOXES`] (appended together),
    /// guarded on the roster stream as folded under `held`, so two devices never both
    /// renew. The caller registers the new mailboxes; our hello naming each goes with
    /// every message to its contact until the contact writes there.
    pub fn plan_renewal<R: CryptoRng + ?Sized>(
        &self,
        held: &EpochKey,
        rng: &mut R,
    ) -> Vec<Guarded> {
        let revocations = self.roster().revoked_count();
        let stream = ROSTER_STREAM.to_vec();
        let version = self.stream(&held.stream_tag(&stream)).version;
        let mailboxes: Vec<([u8; 32], [u8; 32])> = self
            .contact_roots()
            .map(|root| {
                let mut mailbox = [0; 32];
                rng.fill_bytes(&mut mailbox);
                (root, mailbox)
            })
            .collect();
        let mut chunks: Vec<Vec<([u8; 32], [u8; 32])>> = mailboxes
            .chunks(MAX_REPLACED_MAILBOXES)
            .map(<[_]>::to_vec)
            .collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        // One guard for the batch: the relay checks it against the first record only.
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, mailboxes)| Guarded {
                event: EventKind::MailboxesReplaced {
                    revocations,
                    mailboxes,
                },
                stream: stream.clone(),
                version: version + i64::try_from(i).unwrap_or(i64::MAX),
            })
            .collect()
    }
}

/// Opens the new epoch key a folded rotation sealed to `device`, and checks it against
/// the rotation's commitment.
pub fn open_epoch_key(
    log_id: &[u8; 32],
    device: &[u8; 32],
    secret: &DeviceDhSecret,
    rotation: &EpochRotation,
) -> Result<EpochKey, EpochKeyError> {
    let (_, sealed) = rotation
        .keys
        .iter()
        .find(|(d, _)| d == device)
        .ok_or(EpochKeyError::NotSealedToUs)?;
    let ad = associated_data(log_id, rotation.epoch, device);
    let raw =
        chorus_crypto::open_sealed(secret, &ad, sealed).map_err(|_| EpochKeyError::Unopenable)?;
    let raw: Zeroizing<[u8; 32]> = Zeroizing::new(
        raw.as_slice()
            .try_into()
            .map_err(|_| EpochKeyError::Unopenable)?,
    );
    let key = EpochKey::from_bytes(&raw);
    if key.commitment() != rotation.commitment {
        return Err(EpochKeyError::Commitment);
    }
    Ok(key)
}
