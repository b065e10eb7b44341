//! Log records: an event sealed under the epoch key (DESIGN §4).
//!
//! A log record is an event sealed under the epoch key ([`seal_event`]); the associated
//! data binds the log and what the relay stores in the clear beside it — epoch, the
//! relay-stamped author, the guard — so the relay cannot move a record to another log,
//! author, epoch or stream (`chain.rs` binds it to its place in the log).
//! [`open_event`] also requires the event's own author field to equal the relay-stamped
//! one. The fold (`fold.rs`) decides what an opened event does; [`LogError`] says why a
//! record was refused.

use chorus_crypto::{CryptoRng, EpochKey};
use chorus_wire::{LogEvent, WireError};

use crate::error::SessionError;
use crate::roster::RosterError;

const AD_LABEL: &[u8] = b"chorus-log-record-v2";

/// What the relay stores in the clear beside a record's ciphertext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordContext<'a> {
    /// The log it belongs to (a record moved to another log of the same key does not
    /// open).
    pub log_id: [u8; 32],
    /// The epoch whose key sealed it.
    pub epoch: u32,
    /// The author device, as stamped by the relay from the authenticated connection.
    pub author: [u8; 32],
    /// The guard: stream tag and expected version.
    pub guard: Option<(&'a [u8], i64)>,
}

impl RecordContext<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut ad = Vec::with_capacity(AD_LABEL.len() + 32 + 4 + 32 + 1 + 64);
        ad.extend_from_slice(AD_LABEL);
        ad.extend_from_slice(&self.log_id);
        ad.extend_from_slice(&self.epoch.to_be_bytes());
        ad.extend_from_slice(&self.author);
        match self.guard {
            None => ad.push(0),
            Some((tag, version)) => {
                ad.push(1);
                ad.extend_from_slice(&(tag.len() as u64).to_be_bytes());
                ad.extend_from_slice(tag);
                ad.extend_from_slice(&version.to_be_bytes());
            }
        }
        ad
    }
}

/// A sealed event: the record's nonce and ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedRecord {
    /// Random per record.
    pub nonce: [u8; 12],
    /// AES-256-GCM ciphertext ‖ tag.
    pub ciphertext: Vec<u8>,
}

/// Why a log record or event was refused. All are the fault of the record's producer
/// (a sibling device, or the relay).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The record does not authenticate under this epoch's key with its stated context
    /// (forged, altered, moved to another author or stream, or from another epoch).
    #[error("log record does not authenticate (forged, altered or moved)")]
    Undecryptable,
    /// The event names another author than the relay stamped.
    #[error("log record's event names another author than the relay stamped")]
    AuthorMismatch,
    /// The author is not (or no longer) in the roster.
    #[error("log record from a device that is not in the roster")]
    UnknownAuthor,
    /// The plaintext is not a valid event.
    #[error("log event: {0}")]
    Wire(#[from] WireError),
    /// Raised if an event of ours breaks a rule every device's fold applies (most often
    /// a size limit): it is not sealed, so it never reaches the log. The caller's fault,
    /// or the input's that made the caller build it.
    #[error("refusing to append an event the fold would refuse: {0}")]
    Unsealable(WireError),
    /// A guarded record at another version than its stream is folded at: the relay
    /// let two records take one version (or skipped one). Every device refuses it;
    /// its author re-does it.
    #[error(
        "log record guarded at version {record} of a stream folded at {folded} (the relay accepted a stale guard)"
    )]
    StreamVersion {
        /// The version this device's fold of the stream expects next.
        folded: i64,
        /// The version the record was guarded at.
        record: i64,
    },
    /// A guarded record that follows another record in its stream than this device
    /// folded: the relay showed its author another history of the stream.
    #[error("log record follows another record in its stream than this device folded")]
    StreamPredecessor,
    /// The author had folded another log than this device at that seq: the relay
    /// shows devices different histories (equivocates, drops or reorders records).
    #[error("the relay showed this record's author another log than this device at seq {seq}")]
    Equivocation {
        /// The seq at which the histories differ (or before it).
        seq: u64,
    },
    /// The relay's page does not continue the log where this device folded it: a
    /// skipped or repeated seq. Nothing of the page is folded.
    #[error("log gap: expected seq {expected}, the relay sent {got}")]
    Gap {
        /// The seq after the last one folded.
        expected: u64,
        /// The seq the relay sent.
        got: u64,
    },
    /// A record sealed under another epoch than the one this device holds.
    #[error("log record from another epoch ({record}) than this device holds ({held})")]
    Epoch {
        /// The epoch this device folds.
        held: u32,
        /// The record's epoch.
        record: u32,
    },
    /// An epoch rotation that does not fit the roster (the `epoch` module).
    #[error("epoch rotation refused: {0}")]
    Rotation(&'static str),
    /// A renewal after a revocation (`MailboxesReplaced`) the fold refuses, and why.
    /// A leader lease that is not guarded on the lease stream or does not follow the
    /// lease before it.
    #[error("leader lease refused: {0}")]
    Lease(&'static str),
    #[error("mailbox renewal refused: {0}")]
    Renewal(&'static str),
    /// A `RootShared` record where it has no place.
    #[error("a shared root: {0}")]
    RootShared(&'static str),
    /// An `IdentityShared` record where it has no place.
    #[error("a rolled identity: {0}")]
    IdentityShared(&'static str),
    /// A signed roster entry the roster refuses (signature, chain or signer).
    #[error("roster entry refused: {0}")]
    Roster(RosterError),
    /// An event about a contact this identity does not have.
    #[error("log event about an unknown contact")]
    UnknownContact,
    /// An event about a device the roster never held.
    #[error("log event about a device the roster never held")]
    UnknownDevice,
    /// A session snapshot or ratchet delta that does not apply.
    #[error("log event's session state: {0}")]
    Session(#[from] SessionError),
    /// Private prekeys that are not what they claim to be.
    #[error("log event carries a prekey secret that does not parse as its kind")]
    PrekeySecret,
    /// A record whose author claims to have folded the log at or past the record's
    /// own position: impossible for an honest relay and author.
    #[error("log record at seq {seq} claims its author had folded seq {head}")]
    HeadAhead {
        /// The claimed head.
        head: u64,
        /// The record's own seq.
        seq: u64,
    },
}

/// Seals an event into a record, after checking it as every device's fold will
/// ([`LogEvent::encode_checked`]).
pub fn seal_event<R: CryptoRng + ?Sized>(
    key: &EpochKey,
    context: &RecordContext<'_>,
    event: &LogEvent,
    rng: &mut R,
) -> Result<SealedRecord, LogError> {
    let plain = event.encode_checked().map_err(LogError::Unsealable)?;
    let (nonce, ciphertext) = key.seal(&context.associated_data(), &plain, rng);
    Ok(SealedRecord { nonce, ciphertext })
}

/// Opens a record: authenticates it with its context, decodes the event, and checks
/// that the event's author is the relay-stamped author.
pub fn open_event(
    key: &EpochKey,
    context: &RecordContext<'_>,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<LogEvent, LogError> {
    let plaintext = key
        .open(&context.associated_data(), nonce, ciphertext)
        .map_err(|_| LogError::Undecryptable)?;
    let event = LogEvent::decode(&plaintext)?;
    if event.author != context.author {
        return Err(LogError::AuthorMismatch);
    }
    Ok(event)
}
