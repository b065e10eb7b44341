//! The constellation's shared state: a deterministic fold of log events (DESIGN §4).
//!
//! A log record is an event sealed under the epoch key ([`seal_event`]); the associated
//! data binds the log and what the relay stores in the clear beside it — epoch, the
//! relay-stamped author, the guard — so the relay cannot move a record to another log,
//! author, epoch or stream (`chain.rs` binds it to its place in the log). [`open_event`] also requires the event's own author field to equal the
//! relay-stamped one. [`Constellation::apply`] then folds the event into the state:
//! authors must be in the roster, events are deduplicated by id, Lamport clocks advance,
//! and last-writer-wins fields resolve by [`Stamp`](crate::Stamp). Every refusal changes
//! nothing.
//!
//! The fold is order-free for the kinds here (registers, maxima and sets), so two devices
//! that applied the same events in any order hold the same state and the same
//! [`Constellation::digest`] — the property the tests check.

use std::collections::{BTreeMap, BTreeSet};

use chorus_crypto::{CryptoRng, EpochKey};
use chorus_wire::{EventKind, LogEvent, WireError};
use sha2::{Digest, Sha256};

use crate::lww::{LamportClock, Lww, Stamp};
use crate::roster::Roster;

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

/// Whether an event changed the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// First time this event id was seen.
    New,
    /// Already applied: nothing changed.
    Duplicate,
}

/// The state every device of the identity derives from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constellation {
    roster: Roster,
    clock: LamportClock,
    seen: BTreeSet<[u8; 16]>,
    profile: Option<Lww<String>>,
    relays: Option<Lww<Vec<String>>>,
    contacts: BTreeMap<[u8; 32], Lww<String>>,
    read: BTreeMap<[u8; 32], u64>,
    delivered: BTreeSet<[u8; 16]>,
    blocked: BTreeMap<[u8; 32], Lww<bool>>,
    /// When each device was last linked again (the author's clock, last writer wins).
    relinked: BTreeMap<[u8; 32], Lww<u64>>,
}

impl Constellation {
    /// The state at a validated roster, before any event.
    pub fn new(roster: Roster) -> Self {
        Self {
            roster,
            clock: LamportClock::default(),
            seen: BTreeSet::new(),
            profile: None,
            relays: None,
            contacts: BTreeMap::new(),
            read: BTreeMap::new(),
            delivered: BTreeSet::new(),
            blocked: BTreeMap::new(),
            relinked: BTreeMap::new(),
        }
    }

    /// Folds one event in, or refuses it and changes nothing.
    pub fn apply(&mut self, event: &LogEvent) -> Result<Applied, LogError> {
        if !self
            .roster
            .devices()
            .iter()
            .any(|d| *d.key.as_bytes() == event.author)
        {
            return Err(LogError::UnknownAuthor);
        }
        if self.seen.contains(&event.event_id) {
            return Ok(Applied::Duplicate);
        }
        let stamp = Stamp::of(event);
        match &event.kind {
            EventKind::ContactUpserted { contact, name, .. } => {
                match self.contacts.get_mut(contact) {
                    Some(r) => {
                        r.set(name.clone(), stamp);
                    }
                    None => {
                        self.contacts
                            .insert(*contact, Lww::new(name.clone(), stamp));
                    }
                }
            }
            EventKind::ProfileUpdated { name } => set(&mut self.profile, name.clone(), stamp),
            EventKind::RelaysUpdated { relays } => set(&mut self.relays, relays.clone(), stamp),
            EventKind::Read { contact, up_to } => {
                let r = self.read.entry(*contact).or_insert(0);
                *r = (*r).max(*up_to);
            }
            EventKind::Delivered { envelope_id } => {
                self.delivered.insert(*envelope_id);
            }
            EventKind::Blocked { contact, blocked } => match self.blocked.get_mut(contact) {
                Some(r) => {
                    r.set(*blocked, stamp);
                }
                None => {
                    self.blocked.insert(*contact, Lww::new(*blocked, stamp));
                }
            },
            EventKind::Relinked { device } => match self.relinked.get_mut(device) {
                Some(r) => {
                    r.set(event.timestamp_ms, stamp);
                }
                None => {
                    self.relinked
                        .insert(*device, Lww::new(event.timestamp_ms, stamp));
                }
            },
            // Sessions and prekeys are folded by the client into its store (their state
            // is secret and large); here they count as seen, so the digest covers them.
            EventKind::Sent(_) | EventKind::PrekeysCreated { .. } | EventKind::Received { .. } => {}
            EventKind::Roster { entry } => {
                let entry = chorus_wire::RosterEntry::decode(entry)?;
                self.roster
                    .apply(&entry)
                    .map_err(|_| LogError::UnknownAuthor)?;
            }
        }
        self.clock.observe(event.lamport);
        self.seen.insert(event.event_id);
        Ok(Applied::New)
    }

    /// The Lamport value for this device's next event.
    pub fn next_lamport(&mut self) -> u64 {
        self.clock.tick()
    }

    /// The roster this state was folded under.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The identity's display name, if set.
    pub fn profile_name(&self) -> Option<&str> {
        self.profile.as_ref().map(|r| r.get().as_str())
    }

    /// The identity's relays, if set.
    pub fn relays(&self) -> Option<&[String]> {
        self.relays.as_ref().map(|r| r.get().as_slice())
    }

    /// A contact's alias.
    pub fn contact_name(&self, contact: &[u8; 32]) -> Option<&str> {
        self.contacts.get(contact).map(|r| r.get().as_str())
    }

    /// How far messages with a contact are read.
    pub fn read_up_to(&self, contact: &[u8; 32]) -> u64 {
        self.read.get(contact).copied().unwrap_or(0)
    }

    /// Whether an identity is blocked.
    pub fn is_blocked(&self, contact: &[u8; 32]) -> bool {
        self.blocked.get(contact).is_some_and(|r| *r.get())
    }

    /// When `device` was last linked again, if it was (the approver's clock).
    pub fn relinked_ms(&self, device: &[u8; 32]) -> Option<u64> {
        self.relinked.get(device).map(|r| *r.get())
    }

    /// Whether an envelope is known to be delivered (so no sibling re-delivers it).
    pub fn is_delivered(&self, envelope_id: &[u8; 16]) -> bool {
        self.delivered.contains(envelope_id)
    }

    /// A digest of the whole state: equal on every device that applied the same events.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"chorus-constellation-state-v1");
        h.update(self.roster.head());
        h.update(self.clock.now().to_be_bytes());
        h.update((self.seen.len() as u64).to_be_bytes());
        for id in &self.seen {
            h.update(id);
        }
        let text = |h: &mut Sha256, s: &str| {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        match &self.profile {
            None => h.update([0]),
            Some(r) => {
                h.update([1]);
                text(&mut h, r.get());
            }
        }
        match &self.relays {
            None => h.update([0]),
            Some(r) => {
                h.update([1]);
                h.update((r.get().len() as u64).to_be_bytes());
                for url in r.get() {
                    text(&mut h, url);
                }
            }
        }
        h.update((self.contacts.len() as u64).to_be_bytes());
        for (id, name) in &self.contacts {
            h.update(id);
            text(&mut h, name.get());
        }
        h.update((self.read.len() as u64).to_be_bytes());
        for (id, up_to) in &self.read {
            h.update(id);
            h.update(up_to.to_be_bytes());
        }
        h.update((self.delivered.len() as u64).to_be_bytes());
        for id in &self.delivered {
            h.update(id);
        }
        h.update((self.blocked.len() as u64).to_be_bytes());
        for (id, blocked) in &self.blocked {
            h.update(id);
            h.update([u8::from(*blocked.get())]);
        }
        h.update((self.relinked.len() as u64).to_be_bytes());
        for (id, at) in &self.relinked {
            h.update(id);
            h.update(at.get().to_be_bytes());
        }
        h.finalize().into()
    }
}

fn set<T>(slot: &mut Option<Lww<T>>, value: T, stamp: Stamp) {
    match slot {
        Some(r) => {
            r.set(value, stamp);
        }
        None => *slot = Some(Lww::new(value, stamp)),
    }
}
