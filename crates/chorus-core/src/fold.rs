//! The constellation's shared state and the one fold that ships (DESIGN §4).
//!
//! Every device of an identity folds the identity's log, in the relay's seq order,
//! through [`Constellation::fold_page`]. The fold decides everything about the shared
//! state: whether a record is verified (its place in the log and in its stream,
//! `chain.rs`), whether its author is in the roster, whether it is new, and what it
//! changes. It returns that change as [`Effect`]s; the client only persists them (one
//! transaction per page) and tells the person. Nothing here does I/O, reads a clock or
//! draws randomness, so the same fold runs in the client, the tests and the simulator.
//!
//! **Semantics.**
//! - A record is refused — with a [`LogError`] that says whose fault it was — when it
//!   does not authenticate, comes from another epoch or from outside the roster, does
//!   not follow its stream or its author's head, or its event cannot apply (an unknown
//!   contact, a delta that does not apply, a prekey that does not parse). A refusal
//!   changes nothing but the log position: the chain covers every record shown.
//! - A record whose event id was folded before is a **duplicate**: harmless, reported
//!   as [`Outcome::Duplicate`], and it changes nothing.
//! - Registers (profile, relays, a contact's name, blocked, re-linked) are
//!   last-writer-wins by [`Stamp`]; read markers are maxima; deliveries and seen ids
//!   are sets. A contact is created once (its creation is guarded on its session
//!   stream at version 0); a later creation of a known identity at a later stream
//!   version is a second handshake, anything else is a creation that lost.
//! - Contacts are keyed by root key. Their alias is the name asked for, made unique in
//!   log order (`name`, `name-2`, …); a rename to an alias another contact holds keeps
//!   the old alias.
//!
//! **Sessions** are secret and large, so the state does not hold them: the caller
//! loads the sessions a page needs ([`Constellation::sessions_needed`]) into a
//! [`Sessions`] and writes back the changed ones; the fold changes them only through
//! the core's own [`Session`] operations.
//!
//! The fold is order-free for what commutes — any interleaving of the same records
//! that keeps each stream's order, with duplicates, gives the same
//! [`Constellation::digest`] (the `constellation` tests check it) — and every device
//! folds the relay's one order, which the chain verifies.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chorus_crypto::EpochKey;
use chorus_wire::{
    ContactDetails, EpochRotation, EventKind, FirstMessage, LogEvent, PrekeySecret, RosterBody,
    RosterEntry, SentMessage, Strategy,
};
use sha2::{Digest, Sha256};

use crate::chain::{StreamHead, chain_next, check_head, check_stream, record_hash};
use crate::lww::{LamportClock, Lww, Stamp};
use crate::pqxdh::PrekeyPrivate;
use crate::record::{LogError, RecordContext, open_event};
use crate::roster::Roster;
use crate::session::Session;

/// The stream of one contact's session: sends and the contact's creation are guarded
/// on it.
pub fn session_stream(contact_root: &[u8; 32]) -> Vec<u8> {
    [&b"session:"[..], &contact_root[..]].concat()
}

/// The stream that numbers prekeys (two devices must not mint the same ids).
pub const PREKEY_STREAM: &[u8] = b"prekeys";
/// The roster stream: roster entries are guarded on it, so two devices changing the
/// roster at once cannot fork its hash chain.
pub const ROSTER_STREAM: &[u8] = b"roster";

/// How long an epoch key is used before the log moves to a new one on schedule (a
/// week): together with compaction, a stolen epoch key opens only the records since
/// the last rotation.
pub const EPOCH_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;

/// The register holding the identity's display name.
pub const PROFILE_REGISTER: &str = "profile";
/// The register holding the identity's multi-device strategy.
pub const STRATEGY_REGISTER: &str = "strategy";
/// The register holding the identity's relays (one URL per line).
pub const RELAYS_REGISTER: &str = "relays";
/// The register holding how many revocations the prekeys and mailboxes were last
/// renewed for (big-endian `u64`; see [`Constellation::renewal_due`]).
pub const RENEWED_REGISTER: &str = "renewed";

fn keyed_register(prefix: &str, key: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut name = String::with_capacity(prefix.len() + 1 + 64);
    name.push_str(prefix);
    name.push(':');
    for b in key {
        let _ = write!(name, "{b:02x}");
    }
    name
}

/// The register holding whether an identity is blocked.
pub fn blocked_register(root: &[u8; 32]) -> String {
    keyed_register("blocked", root)
}

/// The register holding the identity root a contact was marked verified for (empty:
/// not marked).
pub fn verified_register(root: &[u8; 32]) -> String {
    keyed_register("verified", root)
}

/// The register holding a conversation's disappearing-message timer: `set_ms` then
/// `secs`, 8 bytes each, big-endian.
pub fn timer_register(root: &[u8; 32]) -> String {
    keyed_register("timer", root)
}

/// The register holding the name a device was renamed to (`chorus devices rename`).
pub fn device_name_register(device: &[u8; 32]) -> String {
    keyed_register("device_name", device)
}

/// The register holding when `device` was last linked again.
pub fn relinked_register(device: &[u8; 32]) -> String {
    keyed_register("relinked", device)
}

/// The register holding the name this identity gives a contact.
pub fn contact_name_register(root: &[u8; 32]) -> String {
    keyed_register("name", root)
}

/// A record as the relay shows it: its position and what it stores in the clear.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The relay's position.
    pub seq: u64,
    /// The epoch it claims to be sealed under.
    pub epoch: u32,
    /// The author the relay stamped.
    pub author: [u8; 32],
    /// The guard: stream tag and expected version.
    pub guard: Option<(&'a [u8], i64)>,
    /// The AEAD nonce.
    pub nonce: &'a [u8],
    /// The sealed event.
    pub ciphertext: &'a [u8],
}

/// The sessions a page's records touch, by contact root key, loaded by the caller
/// before the fold and written back after it (those [`Sessions::changed`]).
#[derive(Default)]
pub struct Sessions {
    map: HashMap<[u8; 32], (Session, bool)>,
}

impl Sessions {
    /// Gives the fold a contact's session as stored.
    pub fn insert(&mut self, root: [u8; 32], session: Session) {
        self.map.insert(root, (session, false));
    }

    /// Whether the caller loaded this contact's session.
    pub fn contains(&self, root: &[u8; 32]) -> bool {
        self.map.contains_key(root)
    }

    /// The sessions the fold changed or created, to persist.
    pub fn changed(&self) -> impl Iterator<Item = (&[u8; 32], &Session)> {
        self.map
            .iter()
            .filter(|(_, (_, changed))| *changed)
            .map(|(root, (session, _))| (root, session))
    }

    fn put(&mut self, root: [u8; 32], session: Session) -> Option<Session> {
        self.map.insert(root, (session, true)).map(|(s, _)| s)
    }
}

/// A message for the history, as the fold decided it.
pub struct HistoryEntry {
    /// The contact's alias.
    pub alias: String,
    /// Sent by this identity.
    pub outgoing: bool,
    /// The envelope id.
    pub envelope_id: [u8; 16],
    /// The text.
    pub text: String,
    /// The file sent with it.
    pub file: Option<chorus_wire::Attachment>,
    /// The sender's clock.
    pub sent_ms: u64,
    /// When stored (the logging device's clock).
    pub stored_ms: u64,
    /// History order within equal times (the log seq or the mailbox seq).
    pub position: u64,
    /// Already read by the identity: every outgoing message, and an incoming one at or
    /// before the contact's read marker as folded (a device catching up shows it, but
    /// not as new).
    pub read: bool,
    /// The device that logged it (zero for a message that came with a handshake).
    pub author: [u8; 32],
}

/// A change to persist, in the order the fold made it. Effects carry plaintext,
/// session state and private prekeys, so `Debug` prints only which change it is.
pub enum Effect {
    /// A signed roster entry, now part of the roster.
    RosterEntry {
        /// Its index in the chain.
        index: u64,
        /// The encoded entry, as stored.
        entry: Vec<u8>,
    },
    /// `shared-root` again: the root key sealed to each current device (each opens its
    /// own box and keeps the key only if it is the roster's root).
    RootShared {
        /// `(device, sealed root)`.
        keys: Vec<([u8; 32], Vec<u8>)>,
    },
    /// The identity rolled (`chorus identity roll`): the new identity secrets sealed to
    /// each current device (each opens its own box and checks it against the roll).
    IdentityShared {
        /// `(device, sealed secrets)`.
        keys: Vec<([u8; 32], Vec<u8>)>,
    },
    /// The security level changed: to `primary-root` with `primary` keeping the root
    /// (every other device deletes its copy), or to `shared-root` (`None`).
    LevelChanged {
        /// The device that keeps the root, in `primary-root`.
        primary: Option<[u8; 32]>,
    },
    /// A device joined the roster.
    DeviceAuthorized {
        /// Its key.
        device: [u8; 32],
        /// Its name.
        name: String,
        /// The name of the device that authorized it.
        by: String,
    },
    /// A device left the roster for good (a root-signed `DeviceRevoked` entry): from
    /// here on every fold refuses its records.
    DeviceRevoked {
        /// Its key.
        device: [u8; 32],
        /// Its name.
        name: String,
        /// The name of the device that revoked it.
        by: String,
    },
    /// The log moved to a new epoch: every stream starts again, and the records after
    /// this one are sealed under the key the rotation seals to each current device
    /// (`open_epoch_key`).
    EpochRotated(Box<EpochRotation>),
    /// A device the roster held was linked again.
    DeviceRelinked {
        /// Its key.
        device: [u8; 32],
        /// Its name.
        name: String,
        /// The name of the device that linked it again.
        by: String,
    },
    /// A last-writer-wins register took a new value.
    Register {
        /// The register's name.
        name: String,
        /// Its value and the stamp that won.
        value: Lww<Vec<u8>>,
    },
    /// The identity's display name changed.
    Profile(String),
    /// Private prekeys were minted (and an invitation mailbox, if for an invitation).
    Prekeys {
        /// The keys (each checked to parse as its kind).
        keys: Vec<PrekeySecret>,
        /// The invitation mailbox they serve.
        invitation_mailbox: Option<[u8; 32]>,
        /// When (the author's clock).
        at_ms: u64,
    },
    /// Prekeys a handshake consumed.
    PrekeysConsumed(Vec<u32>),
    /// A contact was created; its session is in [`Sessions`].
    ContactAdded {
        /// Their root key.
        root: [u8; 32],
        /// The alias it gets here (unique in log order).
        alias: String,
        /// The contact as logged.
        details: Box<ContactDetails>,
        /// Whether the invitation named is one of ours (a stranger answered it) rather
        /// than theirs (we accepted it).
        ours: bool,
    },
    /// A second handshake replaced a known contact's session (now in [`Sessions`]).
    ContactReplaced {
        /// The contact's alias.
        alias: String,
        /// The contact as logged.
        details: Box<ContactDetails>,
    },
    /// A session kept only to read what is still on its way (a retired session, or a
    /// read-only second handshake). The log seq names it, so every device keeps the
    /// same ones.
    SessionRetired {
        /// The contact's alias.
        alias: String,
        /// The seq of the record that retired it.
        seq: u64,
        /// Since when.
        since_ms: u64,
        /// The session.
        session: Box<Session>,
    },
    /// A handshake this identity answered or started: the same first message is never
    /// taken again from this contact.
    HandshakeSeen {
        /// The contact's root key.
        root: [u8; 32],
        /// The handshake's base key.
        base_key: [u8; 32],
    },
    /// One of our invitations was used by this contact.
    InvitationSpent {
        /// The invitation mailbox.
        mailbox: [u8; 32],
        /// The contact's alias.
        alias: String,
    },
    /// A history entry (unless one with its envelope id exists).
    Message(HistoryEntry),
    /// A device that does not encrypt handed a message to the one that does (`leader`,
    /// `primary`): every device keeps it pending until the `Sent` with its envelope id
    /// folds, and the one that encrypts sends it.
    ForwardRequested {
        /// The contact's alias.
        alias: String,
        /// The envelope id, when it was typed, and the text.
        message: FirstMessage,
        /// The device it was typed on.
        author: [u8; 32],
    },
    /// A message was sent: its envelope goes to the outbox until delivered.
    Sent {
        /// The contact's alias.
        alias: String,
        /// The message as logged.
        sent: Box<SentMessage>,
        /// The sending device.
        author: [u8; 32],
        /// When logged.
        at_ms: u64,
    },
    /// An envelope reached the contact's relay.
    Delivered {
        /// The envelope id.
        envelope_id: [u8; 16],
    },
    /// Messages with a contact are read up to here.
    Read {
        /// The contact's alias.
        alias: String,
        /// The position.
        up_to: u64,
    },
    /// An identity was blocked or unblocked.
    Blocked {
        /// The identity's root key.
        root: [u8; 32],
        /// Blocked now.
        blocked: bool,
    },
    /// The mailbox a contact's messages are read from was replaced.
    MailboxReplaced {
        /// The contact's alias.
        alias: String,
        /// The new mailbox.
        mailbox: [u8; 32],
        /// When logged.
        at_ms: u64,
    },
    /// A contact removed, with the conversation: nothing of theirs stays.
    ContactRemoved {
        /// Their root key.
        root: [u8; 32],
        /// The alias they had.
        alias: String,
    },
    /// A contact's alias changed.
    Renamed {
        /// The old alias.
        from: String,
        /// The new alias.
        to: String,
    },
    /// A guarded stream advanced.
    Stream {
        /// The stream's tag.
        tag: Vec<u8>,
        /// Where it is now.
        head: StreamHead,
    },
    /// An event id folded (duplicates of it change nothing).
    Seen([u8; 16]),
    /// The Lamport clock as folded.
    Lamport(u64),
}

impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RosterEntry { .. } => "RosterEntry",
            Self::DeviceAuthorized { .. } => "DeviceAuthorized",
            Self::RootShared { .. } => "RootShared",
            Self::IdentityShared { .. } => "IdentityShared",
            Self::LevelChanged { .. } => "LevelChanged",
            Self::DeviceRevoked { .. } => "DeviceRevoked",
            Self::EpochRotated(_) => "EpochRotated",
            Self::DeviceRelinked { .. } => "DeviceRelinked",
            Self::Register { .. } => "Register",
            Self::Profile(_) => "Profile",
            Self::Prekeys { .. } => "Prekeys",
            Self::PrekeysConsumed(_) => "PrekeysConsumed",
            Self::ContactAdded { .. } => "ContactAdded",
            Self::ContactReplaced { .. } => "ContactReplaced",
            Self::SessionRetired { .. } => "SessionRetired",
            Self::HandshakeSeen { .. } => "HandshakeSeen",
            Self::InvitationSpent { .. } => "InvitationSpent",
            Self::Message(_) => "Message",
            Self::ForwardRequested { .. } => "ForwardRequested",
            Self::Sent { .. } => "Sent",
            Self::Delivered { .. } => "Delivered",
            Self::Read { .. } => "Read",
            Self::Blocked { .. } => "Blocked",
            Self::MailboxReplaced { .. } => "MailboxReplaced",
            Self::ContactRemoved { .. } => "ContactRemoved",
            Self::Renamed { .. } => "Renamed",
            Self::Stream { .. } => "Stream",
            Self::Seen(_) => "Seen",
            Self::Lamport(_) => "Lamport",
        })
    }
}

/// What the fold did with one record.
#[derive(Debug)]
pub enum Outcome {
    /// Folded; persist these.
    Applied(Vec<Effect>),
    /// Folded before: harmless, nothing changed.
    Duplicate,
    /// Refused; nothing changed but the log position.
    Refused(LogError),
}

/// One record folded: the log chain there, and the outcome.
#[derive(Debug)]
pub struct Folded {
    /// The record's seq.
    pub seq: u64,
    /// The log chain hash at `seq` (over every record shown, refused or not).
    pub chain: [u8; 32],
    /// What the record did.
    pub outcome: Outcome,
}

/// A contact as the fold knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The local alias (unique).
    pub alias: String,
    /// How far their messages are read.
    pub read_up_to: u64,
}

/// The folded state as stored, to restore a [`Constellation`] from (the client's
/// store, a checkpoint).
pub struct Parts {
    /// The log.
    pub log_id: [u8; 32],
    /// The epoch this device holds.
    pub epoch: u32,
    /// How many devices the roster had revoked when that epoch began.
    pub epoch_revoked: u64,
    /// The highest epoch of any record shown, folded or refused.
    pub log_epoch: u32,
    /// When the current epoch began (its rotation's author clock; 0: at the
    /// identity's creation).
    pub epoch_since_ms: u64,
    /// The roster chain, encoded, in order.
    pub roster: Vec<Vec<u8>>,
    /// The Lamport clock.
    pub lamport: u64,
    /// The last seq folded.
    pub applied: u64,
    /// The log chain at the seqs known.
    pub chain: Vec<(u64, [u8; 32])>,
    /// The streams.
    pub streams: Vec<(Vec<u8>, StreamHead)>,
    /// The event ids folded.
    pub seen: Vec<[u8; 16]>,
    /// The registers.
    pub registers: Vec<(String, Lww<Vec<u8>>)>,
    /// The contacts, by root key.
    pub contacts: Vec<([u8; 32], Contact)>,
    /// Our invitation mailboxes.
    pub invitations: Vec<[u8; 32]>,
}

impl Parts {
    /// The parts of a log at `epoch` before any record: its roster entries and the
    /// contacts already known (what a test or the simulator starts a device from).
    pub fn fresh(
        log_id: [u8; 32],
        epoch: u32,
        roster: Vec<Vec<u8>>,
        contacts: Vec<([u8; 32], Contact)>,
    ) -> Self {
        Self {
            log_id,
            epoch,
            epoch_revoked: 0,
            log_epoch: epoch,
            epoch_since_ms: 0,
            roster,
            lamport: 0,
            applied: 0,
            chain: Vec::new(),
            streams: Vec::new(),
            seen: Vec::new(),
            registers: Vec::new(),
            contacts,
            invitations: Vec::new(),
        }
    }
}

/// The state every device of the identity derives from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constellation {
    log_id: [u8; 32],
    epoch: u32,
    epoch_revoked: u64,
    log_epoch: u32,
    epoch_since_ms: u64,
    roster: Roster,
    clock: LamportClock,
    applied: u64,
    chain: BTreeMap<u64, [u8; 32]>,
    streams: BTreeMap<Vec<u8>, StreamHead>,
    seen: HashSet<[u8; 16]>,
    registers: BTreeMap<String, Lww<Vec<u8>>>,
    contacts: BTreeMap<[u8; 32], Contact>,
    aliases: BTreeMap<String, [u8; 32]>,
    invitations: BTreeSet<[u8; 32]>,
}

impl Constellation {
    /// The state of a new log at a validated roster, before any record.
    pub fn new(log_id: [u8; 32], epoch: u32, roster: Roster) -> Self {
        Self {
            log_id,
            epoch,
            epoch_revoked: 0,
            log_epoch: epoch,
            epoch_since_ms: roster.created_ms(),
            roster,
            clock: LamportClock::default(),
            applied: 0,
            chain: BTreeMap::new(),
            streams: BTreeMap::new(),
            seen: HashSet::new(),
            registers: BTreeMap::new(),
            contacts: BTreeMap::new(),
            aliases: BTreeMap::new(),
            invitations: BTreeSet::new(),
        }
    }

    /// Restores the state from its stored parts, validating the roster chain whole.
    pub fn restore(parts: Parts) -> Result<Self, LogError> {
        let roster =
            Roster::validate_chain(parts.log_id, &parts.roster).map_err(LogError::Roster)?;
        let mut state = Self::new(parts.log_id, parts.epoch, roster);
        state.epoch_revoked = parts.epoch_revoked;
        state.log_epoch = parts.log_epoch.max(parts.epoch);
        if parts.epoch_since_ms > 0 {
            state.epoch_since_ms = parts.epoch_since_ms;
        }
        state.clock.observe(parts.lamport);
        state.applied = parts.applied;
        state.chain = parts.chain.into_iter().collect();
        state.streams = parts.streams.into_iter().collect();
        state.seen = parts.seen.into_iter().collect();
        state.registers = parts.registers.into_iter().collect();
        for (root, contact) in parts.contacts {
            state.aliases.insert(contact.alias.clone(), root);
            state.contacts.insert(root, contact);
        }
        state.invitations = parts.invitations.into_iter().collect();
        Ok(state)
    }

    /// Authenticates and decodes a record (pure: changes nothing) with `key`, the
    /// current epoch's. The fold takes its result, so a page can be opened before the
    /// sessions it needs are loaded. A record of the next epoch is opened with the
    /// current key too: only the rotation that starts that epoch is sealed so, and the
    /// fold refuses any other event there (the `epoch` module).
    pub fn open(&self, key: &EpochKey, record: &Record<'_>) -> Result<LogEvent, LogError> {
        if record.epoch < self.epoch {
            return Err(LogError::Epoch {
                held: self.epoch,
                record: record.epoch,
            });
        }
        let context = RecordContext {
            log_id: self.log_id,
            epoch: record.epoch,
            author: record.author,
            guard: record.guard,
        };
        open_event(key, &context, record.nonce, record.ciphertext)
    }

    /// The contact whose session an opened event reads or changes, if the fold needs
    /// it loaded.
    pub fn sessions_needed<'e>(
        &self,
        opened: impl IntoIterator<Item = &'e Result<LogEvent, LogError>>,
    ) -> BTreeSet<[u8; 32]> {
        opened
            .into_iter()
            .filter_map(|o| match o.as_ref().ok().map(|e| &e.kind) {
                Some(EventKind::Sent(sent)) => Some(sent.contact),
                Some(EventKind::ContactUpserted {
                    contact,
                    details: Some(_),
                    ..
                }) => Some(*contact),
                _ => None,
            })
            .filter(|root| self.contacts.contains_key(root))
            .collect()
    }

    /// Folds a page of records, each with what [`Self::open`] made of it. The page
    /// must continue the log where this state is: a skipped seq refuses the whole
    /// page and changes nothing; records at or below the folded seq are skipped.
    ///
    /// The fold stops after a rotation ([`Effect::EpochRotated`]): the records after it
    /// are sealed under the new key, so the caller takes that key, opens the page
    /// again with it and folds the rest (the records folded are skipped).
    pub fn fold_page(
        &mut self,
        key: &EpochKey,
        records: &[Record<'_>],
        opened: Vec<Result<LogEvent, LogError>>,
        sessions: &mut Sessions,
    ) -> Result<Vec<Folded>, LogError> {
        let mut expected = self.applied;
        for r in records.iter().filter(|r| r.seq > self.applied) {
            expected = expected.saturating_add(1);
            if r.seq != expected {
                return Err(LogError::Gap {
                    expected,
                    got: r.seq,
                });
            }
        }
        let mut out = Vec::new();
        for (record, event) in records.iter().zip(opened) {
            if record.seq <= self.applied {
                continue;
            }
            let epoch = self.epoch;
            out.push(self.fold(key, record, event, sessions));
            if self.epoch != epoch {
                break;
            }
        }
        Ok(out)
    }

    /// Folds the record after the last one folded.
    fn fold(
        &mut self,
        key: &EpochKey,
        record: &Record<'_>,
        event: Result<LogEvent, LogError>,
        sessions: &mut Sessions,
    ) -> Folded {
        let hash = record_hash(
            &self.log_id,
            record.epoch,
            &record.author,
            record.guard,
            record.nonce,
            record.ciphertext,
        );
        let chain = chain_next(self.chain.get(&self.applied), record.seq, &hash);
        let outcome = match event.and_then(|e| self.apply(key, record, hash, e, sessions)) {
            Ok(Some(effects)) => Outcome::Applied(effects),
            Ok(None) => Outcome::Duplicate,
            Err(e) => Outcome::Refused(e),
        };
        self.chain.insert(record.seq, chain);
        self.applied = record.seq;
        self.log_epoch = self.log_epoch.max(record.epoch);
        Folded {
            seq: record.seq,
            chain,
            outcome,
        }
    }

    /// Checks everything, then changes the state; `None` for a duplicate. Every
    /// fallible step comes before the first change (a session delta changes its
    /// session only when it applies, and is the last fallible step).
    fn apply(
        &mut self,
        key: &EpochKey,
        record: &Record<'_>,
        hash: [u8; 32],
        event: LogEvent,
        sessions: &mut Sessions,
    ) -> Result<Option<Vec<Effect>>, LogError> {
        // By bytes: decompressing the key on every record was a tenth of catch-up.
        if !self.roster.is_authorized_id(&event.author) && !self.joins_by_root(&event) {
            return Err(LogError::UnknownAuthor);
        }
        // A record of a later epoch must be the rotation that starts it, and a
        // rotation must start the next epoch.
        let rotation = matches!(event.kind, EventKind::EpochRotated(_));
        let expected = match rotation {
            true => self.next_epoch(),
            false => self.epoch,
        };
        if record.epoch != expected {
            return Err(LogError::Epoch {
                held: self.epoch,
                record: record.epoch,
            });
        }
        check_head(&event.chain, record.seq, |at| self.chain.get(&at).copied())?;
        let stream = match record.guard {
            Some((tag, version)) => {
                let folded = self.streams.get(tag).copied().unwrap_or_default();
                check_stream(folded, version, &event.chain)?;
                Some((tag.to_vec(), folded.advanced(hash)))
            }
            None => None,
        };
        if self.seen.contains(&event.event_id) {
            return Ok(None);
        }
        let stamp = Stamp::of(&event);
        let mut effects = self.decide(key, record, &event, stamp, sessions)?;
        // Checked: from here on nothing fails.
        self.seen.insert(event.event_id);
        effects.push(Effect::Seen(event.event_id));
        self.clock.observe(event.lamport);
        effects.push(Effect::Lamport(self.clock.now()));
        // A rotation starts every stream again, its own included.
        if let (Some((tag, head)), false) = (stream, rotation) {
            self.streams.insert(tag.clone(), head);
            effects.push(Effect::Stream { tag, head });
        }
        Ok(Some(effects))
    }

    /// Whether `event` is a device authorizing itself with the root key: the first
    /// record of a device that recovered the identity from its recovery code, when
    /// no current device was there to authorize it. Whoever holds the root may
    /// authorize any device; a root signature is all any authorization is.
    fn joins_by_root(&self, event: &LogEvent) -> bool {
        let EventKind::Roster { entry } = &event.kind else {
            return false;
        };
        RosterEntry::decode(entry).is_ok_and(|e| {
            e.signer == *self.roster.root().as_bytes()
                && matches!(&e.body, RosterBody::DeviceAuthorized { device, .. }
                    if *device.as_bytes() == event.author)
        })
    }

    /// The event's own change (the caller records it as seen).
    fn decide(
        &mut self,
        key: &EpochKey,
        record: &Record<'_>,
        event: &LogEvent,
        stamp: Stamp,
        sessions: &mut Sessions,
    ) -> Result<Vec<Effect>, LogError> {
        let mut effects = Vec::new();
        match &event.kind {
            EventKind::Roster { entry } => {
                let decoded = RosterEntry::decode(entry)?;
                self.roster.check(&decoded).map_err(LogError::Roster)?;
                // Named before the entry takes it out of the roster.
                let (revoked, by) = match &decoded.body {
                    RosterBody::DeviceRevoked { device } => (
                        Some((*device.as_bytes(), self.device_name(device.as_bytes()))),
                        self.device_name(&event.author),
                    ),
                    _ => (None, String::new()),
                };
                self.roster.apply(&decoded).map_err(LogError::Roster)?;
                effects.push(Effect::RosterEntry {
                    index: decoded.index,
                    entry: entry.clone(),
                });
                if let RosterBody::DeviceAuthorized { device, name, .. } = &decoded.body {
                    effects.push(Effect::DeviceAuthorized {
                        device: *device.as_bytes(),
                        name: name.clone(),
                        by: self.device_name(&event.author),
                    });
                }
                if let Some((device, name)) = revoked {
                    effects.push(Effect::DeviceRevoked { device, name, by });
                }
                if let RosterBody::LevelChanged { primary, .. } = &decoded.body {
                    effects.push(Effect::LevelChanged {
                        primary: primary.map(|p| *p.as_bytes()),
                    });
                }
            }
            EventKind::EpochRotated(r) => {
                if r.epoch != record.epoch {
                    return Err(LogError::Rotation("it names another epoch than its record"));
                }
                // Never the epoch held (at the last epoch there is no next one): a
                // rotation that kept the number would put two keys under one epoch.
                if r.epoch <= self.epoch {
                    return Err(LogError::Rotation("it does not move the epoch forward"));
                }
                self.check_rotation(r)?;
                // Checked: from here on nothing fails.
                self.epoch = r.epoch;
                self.epoch_revoked = r.revoked;
                self.epoch_since_ms = event.timestamp_ms;
                self.streams.clear();
                effects.push(Effect::EpochRotated(r.clone()));
            }
            EventKind::ProfileUpdated { name } => {
                if self.set_register(PROFILE_REGISTER, name.as_bytes(), stamp, &mut effects) {
                    effects.push(Effect::Profile(name.clone()));
                }
            }
            EventKind::StrategySet { strategy } => {
                self.set_register(
                    STRATEGY_REGISTER,
                    strategy.name().as_bytes(),
                    stamp,
                    &mut effects,
                );
            }
            EventKind::LeaderLease { term, expires_ms } => {
                let guarded = matches!(record.guard,
                    Some((tag, _)) if tag == key.stream_tag(crate::lease::LEASE_STREAM));
                if !guarded {
                    return Err(LogError::Lease("it is not guarded on the lease stream"));
                }
                if *expires_ms > event.timestamp_ms.saturating_add(crate::lease::LEASE_MS) {
                    return Err(LogError::Lease("it lasts longer than a lease may"));
                }
                let before = self.lease().map_or(0, |l| l.term);
                if *term != before.saturating_add(1) {
                    return Err(LogError::Lease(
                        "its term does not follow the lease before it",
                    ));
                }
                let lease = crate::lease::Lease {
                    holder: event.author,
                    term: *term,
                    expires_ms: *expires_ms,
                };
                self.set_register(
                    crate::lease::LEASE_REGISTER,
                    &lease.encode(),
                    stamp,
                    &mut effects,
                );
            }
            EventKind::ForwardRequested { contact, message } => {
                effects.push(Effect::ForwardRequested {
                    alias: self.alias_of(contact)?,
                    message: message.clone(),
                    author: event.author,
                });
            }
            EventKind::RelaysUpdated { relays } => {
                self.set_register(
                    RELAYS_REGISTER,
                    relays.join("\n").as_bytes(),
                    stamp,
                    &mut effects,
                );
            }
            EventKind::Relinked { device } => {
                let at = event.timestamp_ms.to_be_bytes();
                if self.set_register(&relinked_register(device), &at, stamp, &mut effects)
                    && let Some(name) = self.roster_name(device)
                {
                    effects.push(Effect::DeviceRelinked {
                        device: *device,
                        name,
                        by: self.device_name(&event.author),
                    });
                }
            }
            EventKind::Blocked { contact, blocked } => {
                if self.set_register(
                    &blocked_register(contact),
                    &[u8::from(*blocked)],
                    stamp,
                    &mut effects,
                ) {
                    effects.push(Effect::Blocked {
                        root: *contact,
                        blocked: *blocked,
                    });
                }
            }
            EventKind::DeviceRenamed { device, name } => {
                if self.roster_name(device).is_none() {
                    return Err(LogError::UnknownDevice);
                }
                self.set_register(
                    &device_name_register(device),
                    name.as_bytes(),
                    stamp,
                    &mut effects,
                );
            }
            EventKind::TimerSet { contact, timer } => {
                // The later setting wins whatever order the log has them in (both
                // sides set it, each on its own log): by when, then the longer.
                // Not by the log's stamps: the later setting is decided by the setting.
                // A setting is never later than the record that logs it: a contact
                // saying "set at the end of time" cannot lock the timer for good.
                let timer = &chorus_wire::Timer {
                    set_ms: timer.set_ms.min(event.timestamp_ms),
                    secs: timer.secs,
                };
                if self.timer(contact).is_none_or(|held| *timer > held) {
                    let mut value = timer.set_ms.to_be_bytes().to_vec();
                    value.extend_from_slice(&timer.secs.to_be_bytes());
                    let name = timer_register(contact);
                    let register = Lww::new(value, stamp);
                    self.registers.insert(name.clone(), register.clone());
                    effects.push(Effect::Register {
                        name,
                        value: register,
                    });
                }
            }
            EventKind::ContactRemoved { contact } => {
                let alias = self.alias_of(contact)?;
                // Checked: from here on nothing fails. What names them later (a
                // sibling's send that lost the race, their read marker) is refused as
                // for any unknown contact; adding them again is a new contact.
                self.contacts.remove(contact);
                self.aliases.remove(&alias);
                sessions.map.remove(contact);
                effects.push(Effect::ContactRemoved {
                    root: *contact,
                    alias,
                });
            }
            EventKind::Verified { contact, root } => {
                // Last writer wins; the register says which root was compared, so a
                // roll of the contact's identity leaves the mark standing for the old
                // root alone ([`Self::verified_root`]).
                let value = root.map(|r| r.to_vec()).unwrap_or_default();
                self.set_register(&verified_register(contact), &value, stamp, &mut effects);
            }
            EventKind::RootShared { keys } => {
                // Only in shared-root (the roster entry that moved there comes first,
                // in the same batch); each device checks the key it opens against the
                // roster's root before it keeps it.
                if self.roster.level() != chorus_wire::SecurityLevel::SharedRoot {
                    return Err(LogError::RootShared("the identity is not in shared-root"));
                }
                effects.push(Effect::RootShared { keys: keys.clone() });
            }
            EventKind::IdentityShared { keys } => {
                // Only after a roll; each device checks what it opens against the
                // roster's last roll before it keeps it.
                if self.roster.identity().is_none() {
                    return Err(LogError::IdentityShared("the identity never rolled"));
                }
                effects.push(Effect::IdentityShared { keys: keys.clone() });
            }
            EventKind::MailboxesReplaced {
                revocations,
                mailboxes,
            } => {
                if *revocations > self.roster.revoked_count() {
                    return Err(LogError::Renewal(
                        "it covers more revocations than the roster made",
                    ));
                }
                let mut moved = Vec::with_capacity(mailboxes.len());
                for (contact, mailbox) in mailboxes {
                    moved.push(Effect::MailboxReplaced {
                        alias: self.alias_of(contact)?,
                        mailbox: *mailbox,
                        at_ms: event.timestamp_ms,
                    });
                }
                // Checked: from here on nothing fails.
                if *revocations > self.renewed() {
                    self.set_register(
                        RENEWED_REGISTER,
                        &revocations.to_be_bytes(),
                        stamp,
                        &mut effects,
                    );
                }
                effects.extend(moved);
            }
            EventKind::Read { contact, up_to } => {
                // A marker for a contact not (yet) here is harmless and kept nowhere.
                if let Some(c) = self.contacts.get_mut(contact)
                    && *up_to > c.read_up_to
                {
                    c.read_up_to = *up_to;
                    effects.push(Effect::Read {
                        alias: c.alias.clone(),
                        up_to: *up_to,
                    });
                }
            }
            EventKind::Delivered { envelope_id } => effects.push(Effect::Delivered {
                envelope_id: *envelope_id,
            }),
            EventKind::PrekeysCreated {
                keys,
                invitation_mailbox,
            } => {
                if keys
                    .iter()
                    .any(|k| !PrekeyPrivate::decode(k.secret.as_bytes()).is_some_and(|p| p.is(k)))
                {
                    return Err(LogError::PrekeySecret);
                }
                if let Some(m) = invitation_mailbox {
                    self.invitations.insert(*m);
                }
                effects.push(Effect::Prekeys {
                    keys: keys.clone(),
                    invitation_mailbox: *invitation_mailbox,
                    at_ms: event.timestamp_ms,
                });
            }
            EventKind::ContactUpserted {
                contact,
                name,
                details,
            } => match details {
                None => self.rename(contact, name, stamp, &mut effects)?,
                Some(d) => match self.contacts.get(contact) {
                    None => self.add_contact(contact, name, d, sessions, &mut effects)?,
                    // A second handshake is settled on the contact's session stream
                    // past its creation; anything else is a creation that lost.
                    Some(c) => {
                        let alias = c.alias.clone();
                        // Its stream's version need not be past 0: streams start
                        // again in each epoch, and a second creation at the version
                        // of the first is refused before this (`check_stream`).
                        let tag = key.stream_tag(&session_stream(contact));
                        if matches!(record.guard, Some((t, _)) if t == tag) {
                            self.second_handshake(
                                contact,
                                alias,
                                d,
                                record.seq,
                                sessions,
                                &mut effects,
                            )?;
                        }
                    }
                },
            },
            EventKind::Sent(sent) => {
                let alias = self.alias_of(&sent.contact)?;
                // `per-device`: the copies went out on the author's own pairwise
                // sessions, which are not escrowed; the shared session did not move.
                if !sent.per_device {
                    let Some((session, changed)) = sessions.map.get_mut(&sent.contact) else {
                        return Err(LogError::UnknownContact);
                    };
                    // The last fallible step: it changes the session only if it applies.
                    // A send after a revocation healed the session first (`plan_send`).
                    let revocations = self.roster.revoked_count();
                    if session.apply_send_delta_after(sent.ratchet_delta.as_bytes(), revocations)? {
                        *changed = true;
                    }
                }
                effects.push(Effect::Sent {
                    alias: alias.clone(),
                    sent: sent.clone(),
                    author: event.author,
                    at_ms: event.timestamp_ms,
                });
                // A bundled send reached the relay with this very record.
                if sent.bundled {
                    effects.push(Effect::Delivered {
                        envelope_id: sent.envelope_id,
                    });
                }
                if !sent.text.is_empty() || sent.file.is_some() {
                    effects.push(Effect::Message(HistoryEntry {
                        alias,
                        outgoing: true,
                        envelope_id: sent.envelope_id,
                        text: sent.text.clone(),
                        file: sent.file.clone(),
                        sent_ms: sent.sent_ms,
                        stored_ms: event.timestamp_ms,
                        position: record.seq,
                        read: true,
                        author: event.author,
                    }));
                }
            }
            EventKind::Received {
                contact,
                message,
                position,
            } => {
                let alias = self.alias_of(contact)?;
                let read_up_to = self.contacts.get(contact).map_or(0, |c| c.read_up_to);
                // A sibling logged it before it folded the block: dropped here too.
                let shown = crate::route::delivery(self.is_blocked(contact))
                    == crate::route::Delivery::Show;
                if shown && (!message.text.is_empty() || message.file.is_some()) {
                    effects.push(Effect::Message(HistoryEntry {
                        alias,
                        outgoing: false,
                        envelope_id: message.envelope_id,
                        text: message.text.clone(),
                        file: message.file.clone(),
                        sent_ms: message.sent_ms,
                        stored_ms: event.timestamp_ms,
                        position: *position,
                        read: message.sent_ms <= read_up_to,
                        author: event.author,
                    }));
                }
            }
        }
        Ok(effects)
    }

    fn add_contact(
        &mut self,
        root: &[u8; 32],
        name: &str,
        d: &ContactDetails,
        sessions: &mut Sessions,
        effects: &mut Vec<Effect>,
    ) -> Result<(), LogError> {
        let session = Session::restore(d.session.as_bytes(), 0)?;
        // Checked: from here on nothing fails.
        handshake_seen(root, &session, effects);
        let alias = self.free_alias(name);
        let ours = d
            .invitation
            .as_ref()
            .is_some_and(|m| self.invitations.contains(m));
        sessions.put(*root, session);
        self.aliases.insert(alias.clone(), *root);
        self.contacts.insert(
            *root,
            Contact {
                alias: alias.clone(),
                read_up_to: 0,
            },
        );
        effects.push(Effect::ContactAdded {
            root: *root,
            alias: alias.clone(),
            details: Box::new(d.clone()),
            ours,
        });
        handshake_done(&alias, d, ours, self.is_blocked(root), effects);
        Ok(())
    }

    /// A second handshake with a known contact, settled by the device that read it
    /// (`crate::handshakes`): its session replaces the current one, which is then only
    /// read until it drains, or (`read_only`) it is only read itself.
    fn second_handshake(
        &mut self,
        root: &[u8; 32],
        alias: String,
        d: &ContactDetails,
        seq: u64,
        sessions: &mut Sessions,
        effects: &mut Vec<Effect>,
    ) -> Result<(), LogError> {
        let new = Session::restore(d.session.as_bytes(), 0)?;
        // Checked: from here on nothing fails.
        handshake_seen(root, &new, effects);
        if d.read_only {
            effects.push(Effect::SessionRetired {
                alias: alias.clone(),
                seq,
                since_ms: d.added_ms,
                session: Box::new(new),
            });
        } else {
            if let Some(old) = sessions.put(*root, new) {
                handshake_seen(root, &old, effects);
                effects.push(Effect::SessionRetired {
                    alias: alias.clone(),
                    seq,
                    since_ms: d.added_ms,
                    session: Box::new(old),
                });
            }
            effects.push(Effect::ContactReplaced {
                alias: alias.clone(),
                details: Box::new(d.clone()),
            });
        }
        let spent =
            d.first.is_some() && d.invitation.is_some_and(|m| self.invitations.contains(&m));
        handshake_done(&alias, d, spent, self.is_blocked(root), effects);
        Ok(())
    }

    /// A rename: last writer wins on the contact's name register; the alias follows
    /// unless another contact holds it.
    fn rename(
        &mut self,
        root: &[u8; 32],
        name: &str,
        stamp: Stamp,
        effects: &mut Vec<Effect>,
    ) -> Result<(), LogError> {
        let from = self.alias_of(root)?;
        if !self.set_register(
            &contact_name_register(root),
            name.as_bytes(),
            stamp,
            effects,
        ) || from == name
            || self.aliases.contains_key(name)
        {
            return Ok(());
        }
        self.aliases.remove(&from);
        self.aliases.insert(name.to_owned(), *root);
        if let Some(c) = self.contacts.get_mut(root) {
            c.alias = name.to_owned();
        }
        effects.push(Effect::Renamed {
            from,
            to: name.to_owned(),
        });
        Ok(())
    }

    /// Sets a register if `stamp` is newer than what it holds; returns whether it did.
    fn set_register(
        &mut self,
        name: &str,
        value: &[u8],
        stamp: Stamp,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let changed = match self.registers.get_mut(name) {
            Some(r) => r.set(value.to_vec(), stamp),
            None => {
                self.registers
                    .insert(name.to_owned(), Lww::new(value.to_vec(), stamp));
                true
            }
        };
        if changed && let Some(r) = self.registers.get(name) {
            effects.push(Effect::Register {
                name: name.to_owned(),
                value: r.clone(),
            });
        }
        changed
    }

    /// A rotation starts the next epoch, for the roster as it stands: sealed to every
    /// current device once and to nobody else, counting every revocation so far.
    fn check_rotation(&self, r: &EpochRotation) -> Result<(), LogError> {
        let devices = self.roster.devices();
        let exact = r.keys.len() == devices.len()
            && devices
                .iter()
                .all(|d| r.keys.iter().filter(|(k, _)| k == d.key.as_bytes()).count() == 1);
        if !exact {
            return Err(LogError::Rotation(
                "it does not seal the key to exactly the current devices",
            ));
        }
        if r.revoked != self.roster.revoked_count() {
            return Err(LogError::Rotation(
                "it counts other revocations than the roster holds",
            ));
        }
        Ok(())
    }

    /// The epoch this state folds.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// How many devices the roster had revoked when the current epoch began.
    pub fn epoch_revoked(&self) -> u64 {
        self.epoch_revoked
    }

    /// Whether the log must move to a new epoch key at `now_ms` (the caller's clock):
    /// the roster revoked a device since the current epoch began, so a device that is
    /// no longer ours holds the key; the log shows a record of a later epoch that no
    /// rotation started (a device wrote ahead, and the relay refuses anything older
    /// now), so the log moves past it; or the epoch is [`EPOCH_LIFETIME_MS`] old, so a
    /// key that leaked opens only what was written since the last rotation.
    pub fn rotation_due(&self, now_ms: u64) -> bool {
        self.roster.revoked_count() > self.epoch_revoked
            || self.log_epoch > self.epoch
            || now_ms >= self.epoch_since_ms.saturating_add(EPOCH_LIFETIME_MS)
    }

    /// How many revocations the directory's prekeys and the contacts' mailboxes were
    /// last renewed for.
    pub fn renewed(&self) -> u64 {
        self.register(RENEWED_REGISTER)
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map_or(0, u64::from_be_bytes)
    }

    /// Whether the roster revoked a device since the prekeys and mailboxes were last
    /// renewed (the revoked device knows every private prekey minted before and every
    /// mailbox id): see [`Self::plan_renewal`]. Due until a renewal lands, so a
    /// revocation whose device stopped midway is finished by the next device that
    /// syncs.
    pub fn renewal_due(&self) -> bool {
        self.roster.revoked_count() > self.renewed()
    }

    /// When the current epoch began (its rotation's author clock, or the identity's
    /// creation).
    pub fn epoch_since_ms(&self) -> u64 {
        self.epoch_since_ms
    }

    /// The epoch the next rotation starts: the one after this, or the latest the log
    /// shows if a record got there first (the relay takes no older epoch than that,
    /// nor one more than one past it).
    pub fn next_epoch(&self) -> u32 {
        self.epoch.saturating_add(1).max(self.log_epoch)
    }

    /// The highest epoch of any record shown, folded or refused.
    pub fn log_epoch(&self) -> u32 {
        self.log_epoch
    }

    /// `wanted`, or `wanted-2`, `wanted-3`, … : the first alias no contact holds.
    pub fn free_alias(&self, wanted: &str) -> String {
        let mut candidate = wanted.to_owned();
        let mut n = 2u64;
        while self.aliases.contains_key(&candidate) {
            let suffix = format!("-{n}");
            let mut base = wanted.to_owned();
            while base.len() + suffix.len() > chorus_wire::limits::MAX_DISPLAY_NAME_LEN {
                base.pop();
            }
            candidate = format!("{base}{suffix}");
            n += 1;
        }
        candidate
    }

    fn alias_of(&self, root: &[u8; 32]) -> Result<String, LogError> {
        self.contacts
            .get(root)
            .map(|c| c.alias.clone())
            .ok_or(LogError::UnknownContact)
    }

    fn roster_name(&self, device: &[u8; 32]) -> Option<String> {
        self.roster
            .devices()
            .iter()
            .find(|d| d.key.as_bytes() == device)
            .map(|d| d.name.clone())
    }

    /// The name a device goes by: the one it was renamed to, else the one it was linked
    /// with.
    pub fn device_display_name(&self, device: &[u8; 32]) -> Option<String> {
        self.register(&device_name_register(device))
            .and_then(|v| String::from_utf8(v.to_vec()).ok())
            .or_else(|| self.roster_name(device))
    }

    fn device_name(&self, device: &[u8; 32]) -> String {
        self.device_display_name(device)
            .unwrap_or_else(|| "an unknown device".to_owned())
    }

    /// The log this state folds.
    pub fn log_id(&self) -> &[u8; 32] {
        &self.log_id
    }

    /// The last seq folded.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Where this device stands, for the records it appends: the last seq folded and
    /// the chain hash there (`None` before any record).
    pub fn head(&self) -> Option<(u64, [u8; 32])> {
        self.chain.get(&self.applied).map(|h| (self.applied, *h))
    }

    /// The log chain hash at `seq`, if this device folded it (or was linked there).
    pub fn chain_at(&self, seq: u64) -> Option<[u8; 32]> {
        self.chain.get(&seq).copied()
    }

    /// A stream as folded.
    pub fn stream(&self, tag: &[u8]) -> StreamHead {
        self.streams.get(tag).copied().unwrap_or_default()
    }

    /// The Lamport clock as folded (this device's next event takes the value after).
    pub fn lamport(&self) -> u64 {
        self.clock.now()
    }

    /// Whether an event id was folded.
    pub fn has_seen(&self, event_id: &[u8; 16]) -> bool {
        self.seen.contains(event_id)
    }

    /// The roster this state was folded under.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// A register's value.
    pub fn register(&self, name: &str) -> Option<&[u8]> {
        self.registers.get(name).map(|r| r.get().as_slice())
    }

    /// Who wrote a register's value, and when.
    pub fn register_stamp(&self, name: &str) -> Option<Stamp> {
        self.registers.get(name).map(|r| *r.stamp())
    }

    /// The identity's display name, if set through the log.
    pub fn profile_name(&self) -> Option<&str> {
        self.register(PROFILE_REGISTER)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The identity's multi-device strategy as folded (`sequenced` until one is set).
    pub fn strategy(&self) -> Strategy {
        self.register(STRATEGY_REGISTER)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(Strategy::parse)
            .unwrap_or(Strategy::Sequenced)
    }

    /// Whether an identity is blocked.
    pub fn is_blocked(&self, root: &[u8; 32]) -> bool {
        self.register(&blocked_register(root)) == Some(&[1])
    }

    /// The identity root `contact` was marked verified for, if it is marked: the mark
    /// holds while the contact's identity root is this one.
    /// A conversation's disappearing-message timer, once one was ever set.
    pub fn timer(&self, contact: &[u8; 32]) -> Option<chorus_wire::Timer> {
        let v = <[u8; 16]>::try_from(self.register(&timer_register(contact))?).ok()?;
        let (set, secs) = v.split_at(8);
        Some(chorus_wire::Timer {
            set_ms: u64::from_be_bytes(set.try_into().ok()?),
            secs: u64::from_be_bytes(secs.try_into().ok()?),
        })
    }

    /// The identity root contact `contact` was marked verified for, if any.
    pub fn verified_root(&self, contact: &[u8; 32]) -> Option<[u8; 32]> {
        self.register(&verified_register(contact))
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
    }

    /// When `device` was last linked again, if it was (the approver's clock).
    pub fn relinked_ms(&self, device: &[u8; 32]) -> Option<u64> {
        self.register(&relinked_register(device))
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(u64::from_be_bytes)
    }

    /// Every contact's root key.
    pub fn contact_roots(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.contacts.keys().copied()
    }

    /// A contact, by root key.
    pub fn contact(&self, root: &[u8; 32]) -> Option<&Contact> {
        self.contacts.get(root)
    }

    /// The root key of the contact with this alias.
    pub fn contact_by_alias(&self, alias: &str) -> Option<&[u8; 32]> {
        self.aliases.get(alias)
    }

    /// A digest of the shared state — roster, clock, seen ids, registers, contacts,
    /// streams, invitations — equal on every device that folded the same records
    /// (the log position, the chain and the latest epoch shown are not in it: see
    /// [`Self::head`], [`Self::log_epoch`]).
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let bytes = |h: &mut Sha256, b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        h.update(b"chorus-constellation-state-v2");
        h.update(self.log_id);
        h.update(self.epoch.to_be_bytes());
        h.update(self.epoch_revoked.to_be_bytes());
        h.update(self.epoch_since_ms.to_be_bytes());
        h.update(self.roster.head());
        h.update(self.clock.now().to_be_bytes());
        let mut seen: Vec<_> = self.seen.iter().collect();
        seen.sort_unstable();
        h.update((seen.len() as u64).to_be_bytes());
        for id in seen {
            h.update(id);
        }
        h.update((self.registers.len() as u64).to_be_bytes());
        for (name, r) in &self.registers {
            bytes(&mut h, name.as_bytes());
            bytes(&mut h, r.get());
        }
        h.update((self.contacts.len() as u64).to_be_bytes());
        for (root, c) in &self.contacts {
            h.update(root);
            bytes(&mut h, c.alias.as_bytes());
            h.update(c.read_up_to.to_be_bytes());
        }
        h.update((self.streams.len() as u64).to_be_bytes());
        for (tag, s) in &self.streams {
            bytes(&mut h, tag);
            h.update(s.version.to_be_bytes());
            h.update(s.head.unwrap_or([0; 32]));
        }
        h.update((self.invitations.len() as u64).to_be_bytes());
        for m in &self.invitations {
            h.update(m);
        }
        h.finalize().into()
    }
}

/// The handshake a session came from, so the same first message is never taken again.
fn handshake_seen(root: &[u8; 32], session: &Session, effects: &mut Vec<Effect>) {
    if let Some(base_key) = session.handshake_base_key() {
        effects.push(Effect::HandshakeSeen {
            root: *root,
            base_key,
        });
    }
}

/// What every handshake folded leaves: our invitation it used marked spent (`spent`),
/// the prekeys it consumed, and the message that came with it (dropped if the contact
/// is `blocked`: a device read it before it folded the block).
fn handshake_done(
    alias: &str,
    d: &ContactDetails,
    spent: bool,
    blocked: bool,
    effects: &mut Vec<Effect>,
) {
    if let (Some(m), true) = (d.invitation, spent) {
        effects.push(Effect::InvitationSpent {
            mailbox: m,
            alias: alias.to_owned(),
        });
    }
    effects.push(Effect::PrekeysConsumed(d.consumed_prekeys.clone()));
    if crate::route::delivery(blocked) == crate::route::Delivery::Show {
        first_message(alias, d, effects);
    }
}

fn first_message(alias: &str, d: &ContactDetails, effects: &mut Vec<Effect>) {
    if let Some(first) = &d.first
        && (!first.text.is_empty() || first.file.is_some())
    {
        effects.push(Effect::Message(HistoryEntry {
            alias: alias.to_owned(),
            outgoing: false,
            envelope_id: first.envelope_id,
            text: first.text.clone(),
            file: first.file.clone(),
            sent_ms: first.sent_ms,
            stored_ms: d.added_ms,
            position: 0,
            read: false,
            author: [0; 32],
        }));
    }
}
