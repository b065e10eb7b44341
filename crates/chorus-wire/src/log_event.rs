//! Constellation log events: the plaintext of one log record (DESIGN §4).
//!
//! Only the identity's own devices read these (they are sealed under the epoch key), but
//! a sibling device can still be buggy or compromised, so every field is checked.

use prost::Message;
use zeroize::Zeroizing;

use crate::Attachment;
use crate::invitation::check_relay_url;
use crate::limits::{
    MAX_CONTACT_SESSION_LEN, MAX_ENVELOPE_LEN, MAX_EPOCH_KEY_RECIPIENTS, MAX_LOG_EVENT_LEN,
    MAX_PREKEY_LEN, MAX_PREKEYS_PER_EVENT, MAX_RATCHET_DELTA_LEN, MAX_RELAYS,
    MAX_REPLACED_MAILBOXES, SEALED_EPOCH_KEY_LEN,
};
use crate::{
    IdentityKeys, WIRE_VERSION, WireError, check_display_name, check_text, check_version,
    decode_bounded, fixed, proto,
};

/// Secret bytes inside an event (a session snapshot, a ratchet delta, a private
/// prekey): wiped on drop; `Debug` prints only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// Everything a sibling needs to talk to a new contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactDetails {
    /// The contact's identity keys (root signature verified).
    pub identity: IdentityKeys,
    /// Where `send_mailbox` lives.
    pub relay_url: String,
    /// Where we post.
    pub send_mailbox: [u8; 32],
    /// The mailbox we created for them.
    pub recv_mailbox: [u8; 32],
    /// The invitation mailbox we accepted, if the contact came from our invitation code.
    pub invitation: Option<[u8; 32]>,
    /// The session snapshot at creation.
    pub session: SecretBytes,
    /// The stranger's first message, when it created the contact.
    pub first: Option<FirstMessage>,
    /// Our one-time prekeys that first message used.
    pub consumed_prekeys: Vec<u32>,
    /// When the contact was added (or its session replaced).
    pub added_ms: u64,
    /// For a contact already known: the session came from a second handshake that
    /// lost to the current one (`chorus_core::handshakes`), and is only read until
    /// drained. Otherwise the session replaces the contact's current one.
    pub read_only: bool,
}

/// A stranger's first message, as its receiver decrypted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstMessage {
    /// Its envelope id.
    pub envelope_id: [u8; 16],
    /// The sender's clock.
    pub sent_ms: u64,
    /// The text.
    pub text: String,
    /// The file sent with it.
    pub file: Option<Attachment>,
}

/// One sent message with its ratchet delta (the escrow of DESIGN §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// The contact's root key.
    pub contact: [u8; 32],
    /// The envelope id (the relay's idempotency key).
    pub envelope_id: [u8; 16],
    /// The contact's relay.
    pub relay_url: String,
    /// The contact's mailbox.
    pub mailbox: [u8; 32],
    /// The encoded envelope, exactly as posted.
    pub envelope: Vec<u8>,
    /// The sender's clock.
    pub sent_ms: u64,
    /// The transcript.
    pub text: String,
    /// The file sent with it (every sibling can fetch it).
    pub file: Option<Attachment>,
    /// The ratchet delta.
    pub ratchet_delta: SecretBytes,
    /// The envelope went to the relay in the same atomic request as this record (a
    /// bundled send): it is delivered, and no device puts it in its outbox.
    pub bundled: bool,
    /// `per-device`: the message went out as pairwise copies, already posted; the
    /// record carries the transcript only (no envelope, no ratchet delta).
    pub per_device: bool,
}

/// Which kind of prekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrekeyKind {
    /// Signed X25519 prekey.
    Signed,
    /// One-time X25519 prekey.
    OneTime,
    /// ML-KEM-768 prekey (one-time or last resort).
    Pq,
}

/// Largest encoded private prekey (the client's sealed-row encoding of a 64-byte
/// ML-KEM seed with its framing).
pub const MAX_PREKEY_SECRET_LEN: usize = 128;

/// One private prekey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeySecret {
    /// The id contacts name.
    pub id: u32,
    /// Its kind.
    pub kind: PrekeyKind,
    /// The last-resort ML-KEM key.
    pub last_resort: bool,
    /// Serves an invitation (else the directory).
    pub invitation: bool,
    /// The signed public half, as published.
    pub public: Vec<u8>,
    /// The private half, in the client's store encoding (opaque here).
    pub secret: SecretBytes,
}

/// What an event says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A contact was added or renamed, or (with details, for a known contact) a
    /// second handshake with it was settled (guarded on its session stream).
    ContactUpserted {
        /// The contact's root key.
        contact: [u8; 32],
        /// The local alias.
        name: String,
        /// Present when the contact is created or a second handshake settled.
        details: Option<Box<ContactDetails>>,
    },
    /// The identity's display name.
    ProfileUpdated {
        /// The new name.
        name: String,
    },
    /// The identity's multi-device strategy (last writer wins).
    StrategySet {
        /// The strategy now in force.
        strategy: crate::Strategy,
    },
    /// `leader`: the author holds the right to encrypt for the identity until
    /// `expires_ms` (its own clock). Guarded on the lease stream, so of two takeovers
    /// one wins; each term is one past the one before it.
    LeaderLease {
        /// The lease's term (1 for the first).
        term: u64,
        /// Until when (the holder's clock, milliseconds since the Unix epoch).
        expires_ms: u64,
    },
    /// `leader` and `primary`: a message typed on a device that does not encrypt, for
    /// the device that does. The `Sent` with its envelope id fulfils it.
    ForwardRequested {
        /// The contact's root key.
        contact: [u8; 32],
        /// The envelope id it is to be sent under, when it was typed, and the text.
        message: FirstMessage,
    },
    /// The identity's relays.
    RelaysUpdated {
        /// Relay URLs, home relay first.
        relays: Vec<String>,
    },
    /// Messages with a contact were read up to a position.
    Read {
        /// The contact's root key.
        contact: [u8; 32],
        /// The position.
        up_to: u64,
    },
    /// An identity was blocked or unblocked (last writer wins). A blocked identity's
    /// first messages are dropped on every device, and its message request removed.
    Blocked {
        /// The identity's root key.
        contact: [u8; 32],
        /// Blocked (`true`) or unblocked.
        blocked: bool,
    },
    /// A contact removed, with the conversation, from every device (guarded on the
    /// contact's session stream, so a send at the same moment is either before it or
    /// refused). Adding them again starts a new conversation.
    ContactRemoved {
        /// The contact's root key (its id here).
        contact: [u8; 32],
    },
    /// The name every device shows for one of the identity's devices (last writer
    /// wins; the roster keeps the name it was linked with).
    DeviceRenamed {
        /// The device's signing key.
        device: [u8; 32],
        /// Its name now (at most 64 bytes).
        name: String,
    },
    /// A conversation's disappearing-message timer, set here or adopted from the
    /// contact (the later setting wins: [`crate::Timer`]).
    TimerSet {
        /// The contact's root key.
        contact: [u8; 32],
        /// The setting.
        timer: crate::Timer,
    },
    /// A contact's identity marked verified, or the mark removed (last writer wins).
    Verified {
        /// The contact's root key (its id here).
        contact: [u8; 32],
        /// The identity root whose safety number was compared (the mark holds only
        /// while the contact's identity is that one); `None`: the mark removed.
        root: Option<[u8; 32]>,
    },
    /// After a revocation, once the directory's prekeys are replaced: each contact's
    /// new mailbox (the revoked device knew the old ones). Every device reads the new
    /// ones too, and our hello naming one travels with every message to its contact
    /// until the contact writes there.
    MailboxesReplaced {
        /// The roster's revocations this renewal covers.
        revocations: u64,
        /// Contact root key and new mailbox, at most
        /// [`MAX_REPLACED_MAILBOXES`](crate::limits::MAX_REPLACED_MAILBOXES).
        mailboxes: Vec<([u8; 32], [u8; 32])>,
    },
    /// `security set shared-root`: the root key sealed to each current device, which
    /// checks what it opens against the roster's root.
    RootShared {
        /// `(device signing key, sealed box of the root secret)`, one per current device.
        keys: Vec<([u8; 32], Vec<u8>)>,
    },
    /// `chorus identity roll`, right after the roster's `RootRolled` entry: the new
    /// identity DH secret, and for each device that holds the root the new root secret
    /// after it, sealed to each current device (which checks both against the roll).
    IdentityShared {
        /// `(device signing key, sealed box)`, one per current device.
        keys: Vec<([u8; 32], Vec<u8>)>,
    },
    /// A message received by one device that its siblings cannot decrypt again (the
    /// session advanced past it): the plaintext, for every device's history.
    Received {
        /// The contact's root key.
        contact: [u8; 32],
        /// The message.
        message: FirstMessage,
        /// The mailbox seq it arrived at (history order).
        position: u64,
    },
    /// A device the roster already held was linked again (reinstalled with its keys,
    /// or an interrupted link resumed): every device shows it as a re-link.
    Relinked {
        /// The device's key.
        device: [u8; 32],
    },
    /// An envelope reached the contact's relay.
    Delivered {
        /// The envelope id.
        envelope_id: [u8; 16],
    },
    /// A message was sent (guarded on the contact's session stream).
    Sent(Box<SentMessage>),
    /// Private prekeys were created.
    PrekeysCreated {
        /// The keys.
        keys: Vec<PrekeySecret>,
        /// The invitation mailbox they serve, for an invitation.
        invitation_mailbox: Option<[u8; 32]>,
    },
    /// A signed roster entry (its signature is checked by the roster, not here).
    Roster {
        /// The encoded entry.
        entry: Vec<u8>,
    },
    /// The log moves to a new epoch key (after a revocation): sealed under the old
    /// key, with the new epoch in the record's clear epoch.
    EpochRotated(Box<EpochRotation>),
}

/// A new epoch key, sealed to each current device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochRotation {
    /// The new epoch.
    pub epoch: u32,
    /// How many devices the roster had revoked when the key was made.
    pub revoked: u64,
    /// The key's commitment (`EpochKey::commitment`): every device checks the key it
    /// opened against it, so all hold the same key.
    pub commitment: [u8; 32],
    /// `(device signing key, sealed box)`, one per current device.
    pub keys: Vec<([u8; 32], Vec<u8>)>,
}

/// One decoded, checked event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// Random id, for deduplication.
    pub event_id: [u8; 16],
    /// The author's Lamport clock.
    pub lamport: u64,
    /// The author's wall clock.
    pub timestamp_ms: u64,
    /// The author device's key (must equal the relay-stamped author).
    pub author: [u8; 32],
    /// Where the author stood in the log when it sealed the event.
    pub chain: ChainLink,
    /// What it says.
    pub kind: EventKind,
}

/// Where an event's author stood when it sealed it: what every reader checks the
/// record against, so that a relay cannot show devices different histories unseen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainLink {
    /// For a guarded record: the hash of the record before it in its stream (`None`
    /// at version 0). A reader whose stream ends elsewhere refuses the record.
    pub stream_prev: Option<[u8; 32]>,
    /// The last log seq the author had folded and the log chain hash there (`None`
    /// before any). A reader whose chain differs at that seq was shown another history.
    pub head: Option<(u64, [u8; 32])>,
}

impl LogEvent {
    /// Decodes and checks an event.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let p: proto::LogEvent = decode_bounded("log event", bytes, MAX_LOG_EVENT_LEN)?;
        check_version("log event", p.version)?;
        use proto::log_event::Kind;
        let kind = match p.kind.ok_or(WireError::MissingField("log_event.kind"))? {
            Kind::ContactUpserted(c) => {
                check_display_name("contact_upserted.name", &c.name)?;
                let contact = fixed("contact_upserted.contact_id", &c.contact_id)?;
                let details = c
                    .details
                    .map(|d| decode_details(&contact, d).map(Box::new))
                    .transpose()?;
                EventKind::ContactUpserted {
                    contact,
                    name: c.name,
                    details,
                }
            }
            Kind::Sent(m) => EventKind::Sent(Box::new(decode_sent(m)?)),
            Kind::PrekeysCreated(p) => decode_prekeys(p)?,
            Kind::Roster(r) => {
                if r.entry.is_empty() {
                    return Err(WireError::MissingField("roster.entry"));
                }
                EventKind::Roster { entry: r.entry }
            }
            Kind::ProfileUpdated(p) => {
                check_display_name("profile_updated.name", &p.name)?;
                EventKind::ProfileUpdated { name: p.name }
            }
            Kind::StrategySet(p) => EventKind::StrategySet {
                strategy: crate::Strategy::parse(&p.strategy).ok_or(WireError::InvalidText {
                    field: "strategy_set.strategy",
                    reason: "not a known strategy",
                })?,
            },
            Kind::LeaderLease(l) => {
                if l.term == 0 {
                    return Err(WireError::InvalidText {
                        field: "leader_lease.term",
                        reason: "terms start at 1",
                    });
                }
                EventKind::LeaderLease {
                    term: l.term,
                    expires_ms: l.expires_ms,
                }
            }
            Kind::ForwardRequested(f) => EventKind::ForwardRequested {
                contact: fixed("forward_requested.contact_id", &f.contact_id)?,
                message: decode_message(f.message, "forward_requested.message")?,
            },
            Kind::RelaysUpdated(r) => {
                if r.relay_urls.is_empty() || r.relay_urls.len() > MAX_RELAYS {
                    return Err(WireError::InvalidText {
                        field: "relays_updated.relay_urls",
                        reason: "must list 1 to 8 relays",
                    });
                }
                for url in &r.relay_urls {
                    check_relay_url("relays_updated.relay_urls", url)?;
                }
                EventKind::RelaysUpdated {
                    relays: r.relay_urls,
                }
            }
            Kind::Read(r) => EventKind::Read {
                contact: fixed("read.contact_id", &r.contact_id)?,
                up_to: r.up_to,
            },
            Kind::Delivered(d) => EventKind::Delivered {
                envelope_id: fixed("delivered.envelope_id", &d.envelope_id)?,
            },
            Kind::Received(r) => EventKind::Received {
                contact: fixed("received.contact_id", &r.contact_id)?,
                message: decode_message(r.message, "received.message")?,
                position: r.position,
            },
            Kind::Blocked(b) => EventKind::Blocked {
                contact: fixed("blocked.contact_id", &b.contact_id)?,
                blocked: b.blocked,
            },
            Kind::DeviceRenamed(r) => {
                crate::check_display_name("device_renamed.name", &r.name)?;
                EventKind::DeviceRenamed {
                    device: fixed("device_renamed.device", &r.device)?,
                    name: r.name,
                }
            }
            Kind::TimerSet(t) => EventKind::TimerSet {
                contact: fixed("timer_set.contact_id", &t.contact_id)?,
                timer: crate::Timer::from_proto(
                    t.timer
                        .as_ref()
                        .ok_or(WireError::MissingField("timer_set.timer"))?,
                    "timer_set.timer",
                )?,
            },
            Kind::ContactRemoved(r) => EventKind::ContactRemoved {
                contact: fixed("contact_removed.contact_id", &r.contact_id)?,
            },
            Kind::Verified(v) => EventKind::Verified {
                contact: fixed("verified.contact_id", &v.contact_id)?,
                root: match v.root.is_empty() {
                    true => None,
                    false => Some(fixed("verified.root", &v.root)?),
                },
            },
            Kind::Relinked(r) => EventKind::Relinked {
                device: fixed("relinked.device", &r.device)?,
            },
            Kind::MailboxesReplaced(m) => {
                if m.mailboxes.len() > MAX_REPLACED_MAILBOXES {
                    return Err(WireError::InvalidText {
                        field: "mailboxes_replaced.mailboxes",
                        reason: "more than 1,024 mailboxes",
                    });
                }
                EventKind::MailboxesReplaced {
                    revocations: m.revocations,
                    mailboxes: m
                        .mailboxes
                        .iter()
                        .map(|r| {
                            Ok((
                                fixed("mailbox_replaced.contact_id", &r.contact_id)?,
                                fixed("mailbox_replaced.mailbox_id", &r.mailbox_id)?,
                            ))
                        })
                        .collect::<Result<_, WireError>>()?,
                }
            }
            Kind::EpochRotated(r) => EventKind::EpochRotated(Box::new(decode_rotation(r)?)),
            Kind::RootShared(r) => EventKind::RootShared {
                keys: decode_sealed_keys(r.keys, "root_shared.keys")?,
            },
            // The identity DH secret alone, or followed by the root secret.
            Kind::IdentityShared(r) => EventKind::IdentityShared {
                keys: decode_sealed(
                    r.keys,
                    "identity_shared.keys",
                    &[SEALED_EPOCH_KEY_LEN, SEALED_EPOCH_KEY_LEN + 32],
                )?,
            },
        };
        Ok(Self {
            event_id: fixed("log_event.event_id", &p.event_id)?,
            lamport: p.lamport,
            timestamp_ms: p.timestamp_ms,
            author: fixed("log_event.author", &p.author)?,
            chain: ChainLink {
                stream_prev: match p.stream_prev.is_empty() {
                    true => None,
                    false => Some(fixed("log_event.stream_prev", &p.stream_prev)?),
                },
                head: match (p.head_seq, p.head_hash.is_empty()) {
                    (0, true) => None,
                    (0, false) | (_, true) => {
                        return Err(WireError::InvalidText {
                            field: "log_event.head_hash",
                            reason: "a head needs both a seq and a hash",
                        });
                    }
                    (seq, false) => Some((seq, fixed("log_event.head_hash", &p.head_hash)?)),
                },
            },
            kind,
        })
    }

    /// Encodes the event and checks it against every rule [`LogEvent::decode`] applies
    /// (the total size, the session snapshot's, the delta's, texts and keys), so an event
    /// every device's fold would refuse is never sealed and appended. Sealing goes
    /// through this; the error names the field over its limit.
    pub fn encode_checked(&self) -> Result<Zeroizing<Vec<u8>>, WireError> {
        let bytes = self.encode();
        if bytes.len() > MAX_LOG_EVENT_LEN {
            return Err(WireError::TooLarge {
                what: "log event",
                max: MAX_LOG_EVENT_LEN,
                actual: bytes.len(),
            });
        }
        Self::decode(&bytes)?;
        Ok(bytes)
    }

    /// Encodes the event, unchecked (tests use it to build what a hostile author
    /// would). The bytes may hold secrets (ratchet deltas, session
    /// snapshots, private prekeys): they are wiped when dropped, and so is every
    /// intermediate copy made here.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        use proto::log_event::Kind;
        let kind = match &self.kind {
            EventKind::ContactUpserted {
                contact,
                name,
                details,
            } => Kind::ContactUpserted(proto::ContactUpserted {
                contact_id: contact.to_vec(),
                name: name.clone(),
                details: details.as_deref().map(encode_details),
            }),
            EventKind::Sent(m) => Kind::Sent(proto::Sent {
                contact_id: m.contact.to_vec(),
                envelope_id: m.envelope_id.to_vec(),
                relay_url: m.relay_url.clone(),
                mailbox_id: m.mailbox.to_vec(),
                envelope: m.envelope.clone(),
                sent_ms: m.sent_ms,
                text: m.text.clone(),
                file: m.file.as_ref().map(Attachment::to_proto),
                ratchet_delta: m.ratchet_delta.as_bytes().to_vec(),
                bundled: m.bundled,
                per_device: m.per_device,
            }),
            EventKind::PrekeysCreated {
                keys,
                invitation_mailbox,
            } => Kind::PrekeysCreated(proto::PrekeysCreated {
                keys: keys
                    .iter()
                    .map(|k| proto::PrekeySecret {
                        id: k.id,
                        kind: match k.kind {
                            PrekeyKind::Signed => proto::PrekeyKind::Signed,
                            PrekeyKind::OneTime => proto::PrekeyKind::OneTime,
                            PrekeyKind::Pq => proto::PrekeyKind::Pq,
                        } as i32,
                        last_resort: k.last_resort,
                        invitation: k.invitation,
                        public: k.public.clone(),
                        secret: k.secret.as_bytes().to_vec(),
                    })
                    .collect(),
                invitation_mailbox: invitation_mailbox.map(|m| m.to_vec()).unwrap_or_default(),
            }),
            EventKind::Roster { entry } => Kind::Roster(proto::RosterAppended {
                entry: entry.clone(),
            }),
            EventKind::ProfileUpdated { name } => {
                Kind::ProfileUpdated(proto::ProfileUpdated { name: name.clone() })
            }
            EventKind::StrategySet { strategy } => Kind::StrategySet(proto::StrategySet {
                strategy: strategy.name().to_owned(),
            }),
            EventKind::RelaysUpdated { relays } => Kind::RelaysUpdated(proto::RelaysUpdated {
                relay_urls: relays.clone(),
            }),
            EventKind::Read { contact, up_to } => Kind::Read(proto::ReadMarker {
                contact_id: contact.to_vec(),
                up_to: *up_to,
            }),
            EventKind::Delivered { envelope_id } => Kind::Delivered(proto::Delivered {
                envelope_id: envelope_id.to_vec(),
            }),
            EventKind::Received {
                contact,
                message,
                position,
            } => Kind::Received(proto::Received {
                contact_id: contact.to_vec(),
                message: Some(encode_message(message)),
                position: *position,
            }),
            EventKind::LeaderLease { term, expires_ms } => Kind::LeaderLease(proto::LeaderLease {
                term: *term,
                expires_ms: *expires_ms,
            }),
            EventKind::ForwardRequested { contact, message } => {
                Kind::ForwardRequested(proto::ForwardRequested {
                    contact_id: contact.to_vec(),
                    message: Some(encode_message(message)),
                })
            }
            EventKind::Blocked { contact, blocked } => Kind::Blocked(proto::Blocked {
                contact_id: contact.to_vec(),
                blocked: *blocked,
            }),
            EventKind::DeviceRenamed { device, name } => {
                Kind::DeviceRenamed(proto::DeviceRenamed {
                    device: device.to_vec(),
                    name: name.clone(),
                })
            }
            EventKind::TimerSet { contact, timer } => Kind::TimerSet(proto::TimerSet {
                contact_id: contact.to_vec(),
                timer: Some(timer.to_proto()),
            }),
            EventKind::ContactRemoved { contact } => Kind::ContactRemoved(proto::ContactRemoved {
                contact_id: contact.to_vec(),
            }),
            EventKind::Verified { contact, root } => Kind::Verified(proto::Verified {
                contact_id: contact.to_vec(),
                root: root.map(|r| r.to_vec()).unwrap_or_default(),
            }),
            EventKind::Relinked { device } => Kind::Relinked(proto::Relinked {
                device: device.to_vec(),
            }),
            EventKind::MailboxesReplaced {
                revocations,
                mailboxes,
            } => Kind::MailboxesReplaced(proto::MailboxesReplaced {
                revocations: *revocations,
                mailboxes: mailboxes
                    .iter()
                    .map(|(c, m)| proto::MailboxReplaced {
                        contact_id: c.to_vec(),
                        mailbox_id: m.to_vec(),
                    })
                    .collect(),
            }),
            EventKind::EpochRotated(r) => Kind::EpochRotated(proto::EpochRotated {
                epoch: r.epoch,
                revoked: r.revoked,
                commitment: r.commitment.to_vec(),
                keys: encode_sealed_keys(&r.keys),
            }),
            EventKind::RootShared { keys } => Kind::RootShared(proto::RootShared {
                keys: encode_sealed_keys(keys),
            }),
            EventKind::IdentityShared { keys } => Kind::IdentityShared(proto::IdentityShared {
                keys: encode_sealed_keys(keys),
            }),
        };
        let mut message = proto::LogEvent {
            version: WIRE_VERSION,
            event_id: self.event_id.to_vec(),
            lamport: self.lamport,
            timestamp_ms: self.timestamp_ms,
            author: self.author.to_vec(),
            stream_prev: self
                .chain
                .stream_prev
                .map(|h| h.to_vec())
                .unwrap_or_default(),
            head_seq: self.chain.head.map_or(0, |(seq, _)| seq),
            head_hash: self.chain.head.map(|(_, h)| h.to_vec()).unwrap_or_default(),
            kind: Some(kind),
        };
        let mut out = Zeroizing::new(Vec::with_capacity(message.encoded_len()));
        // Encoding into a Vec with room for the whole message cannot fail.
        let _ = message.encode(&mut *out);
        if let Some(kind) = message.kind.as_mut() {
            wipe(kind);
        }
        out
    }
}

/// Zeroizes the secret fields of an encoded-from copy.
fn wipe(kind: &mut proto::log_event::Kind) {
    use proto::log_event::Kind;
    use zeroize::Zeroize;
    match kind {
        Kind::Sent(m) => {
            m.ratchet_delta.zeroize();
            m.text.zeroize();
        }
        Kind::ContactUpserted(c) => {
            if let Some(d) = c.details.as_mut() {
                d.session.zeroize();
                if let Some(f) = d.first.as_mut() {
                    f.text.zeroize();
                }
            }
        }
        Kind::PrekeysCreated(p) => {
            for k in &mut p.keys {
                k.secret.zeroize();
            }
        }
        Kind::Received(r) => {
            if let Some(m) = r.message.as_mut() {
                m.text.zeroize();
            }
        }
        _ => {}
    }
}

fn bounded(field: &'static str, bytes: &[u8], max: usize) -> Result<(), WireError> {
    if bytes.is_empty() {
        return Err(WireError::MissingField(field));
    }
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            what: field,
            max,
            actual: bytes.len(),
        });
    }
    Ok(())
}

fn optional_id(field: &'static str, bytes: &[u8]) -> Result<Option<[u8; 32]>, WireError> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        fixed(field, bytes).map(Some)
    }
}

fn decode_details(
    contact: &[u8; 32],
    d: proto::ContactDetails,
) -> Result<ContactDetails, WireError> {
    let identity = IdentityKeys::decode(&d.identity)?;
    if identity.root.as_bytes() != contact {
        return Err(WireError::InvalidText {
            field: "contact_details.identity",
            reason: "does not match contact_id",
        });
    }
    check_relay_url("contact_details.relay_url", &d.relay_url)?;
    bounded(
        "contact_details.session",
        &d.session,
        MAX_CONTACT_SESSION_LEN,
    )?;
    if d.consumed_prekeys.len() > 2 {
        return Err(WireError::InvalidText {
            field: "contact_details.consumed_prekeys",
            reason: "a first message consumes at most two prekeys",
        });
    }
    let first = d.first.map(checked_message).transpose()?;
    Ok(ContactDetails {
        identity,
        relay_url: d.relay_url,
        send_mailbox: fixed("contact_details.send_mailbox", &d.send_mailbox)?,
        recv_mailbox: fixed("contact_details.recv_mailbox", &d.recv_mailbox)?,
        invitation: optional_id("contact_details.invitation", &d.invitation)?,
        session: SecretBytes::new(d.session),
        first,
        consumed_prekeys: d.consumed_prekeys,
        added_ms: d.added_ms,
        read_only: d.read_only,
    })
}

fn encode_details(d: &ContactDetails) -> proto::ContactDetails {
    proto::ContactDetails {
        identity: d.identity.encode(),
        relay_url: d.relay_url.clone(),
        send_mailbox: d.send_mailbox.to_vec(),
        recv_mailbox: d.recv_mailbox.to_vec(),
        invitation: d.invitation.map(|m| m.to_vec()).unwrap_or_default(),
        session: d.session.as_bytes().to_vec(),
        first: d.first.as_ref().map(encode_message),
        consumed_prekeys: d.consumed_prekeys.clone(),
        added_ms: d.added_ms,
        read_only: d.read_only,
    }
}

/// A message carried in an event (`first`, `received`, `forward_requested`), which
/// must be there.
fn decode_message(
    m: Option<proto::FirstMessage>,
    field: &'static str,
) -> Result<FirstMessage, WireError> {
    checked_message(m.ok_or(WireError::MissingField(field))?)
}

fn checked_message(m: proto::FirstMessage) -> Result<FirstMessage, WireError> {
    check_text(&m.text)?;
    Ok(FirstMessage {
        envelope_id: fixed("first_message.envelope_id", &m.envelope_id)?,
        sent_ms: m.sent_ms,
        file: m.file.as_ref().map(Attachment::from_proto).transpose()?,
        text: m.text,
    })
}

fn encode_message(m: &FirstMessage) -> proto::FirstMessage {
    proto::FirstMessage {
        envelope_id: m.envelope_id.to_vec(),
        sent_ms: m.sent_ms,
        text: m.text.clone(),
        file: m.file.as_ref().map(Attachment::to_proto),
    }
}

fn decode_sent(m: proto::Sent) -> Result<SentMessage, WireError> {
    check_relay_url("sent.relay_url", &m.relay_url)?;
    if m.per_device {
        // The copies went out on pairwise sessions: the record is the transcript.
        if !(m.envelope.is_empty() && m.ratchet_delta.is_empty()) {
            return Err(WireError::InvalidText {
                field: "sent.per_device",
                reason: "a per-device send carries no envelope and no ratchet delta",
            });
        }
    } else {
        bounded("sent.envelope", &m.envelope, MAX_ENVELOPE_LEN)?;
        bounded(
            "sent.ratchet_delta",
            &m.ratchet_delta,
            MAX_RATCHET_DELTA_LEN,
        )?;
    }
    check_text(&m.text)?;
    Ok(SentMessage {
        contact: fixed("sent.contact_id", &m.contact_id)?,
        envelope_id: fixed("sent.envelope_id", &m.envelope_id)?,
        relay_url: m.relay_url,
        mailbox: fixed("sent.mailbox_id", &m.mailbox_id)?,
        envelope: m.envelope,
        sent_ms: m.sent_ms,
        file: m.file.as_ref().map(Attachment::from_proto).transpose()?,
        text: m.text,
        ratchet_delta: SecretBytes::new(m.ratchet_delta),
        bundled: m.bundled,
        per_device: m.per_device,
    })
}

fn decode_rotation(r: proto::EpochRotated) -> Result<EpochRotation, WireError> {
    if r.epoch < 2 {
        return Err(WireError::InvalidText {
            field: "epoch_rotated.epoch",
            reason: "a rotation starts epoch 2 or later",
        });
    }
    Ok(EpochRotation {
        epoch: r.epoch,
        revoked: r.revoked,
        commitment: fixed("epoch_rotated.commitment", &r.commitment)?,
        keys: decode_sealed_keys(r.keys, "epoch_rotated.keys")?,
    })
}

/// `(device signing key, sealed box)`, one per device: a 32-byte key (an epoch key,
/// the root) sealed to each device's X25519 key.
pub type SealedKeys = Vec<([u8; 32], Vec<u8>)>;

/// A 32-byte key sealed to each of 1 to 64 devices (an epoch key, the root).
fn decode_sealed_keys(
    keys: Vec<proto::SealedEpochKey>,
    field: &'static str,
) -> Result<SealedKeys, WireError> {
    decode_sealed(keys, field, &[SEALED_EPOCH_KEY_LEN])
}

/// Sealed boxes, one per device, each of one of the `lengths`.
fn decode_sealed(
    keys: Vec<proto::SealedEpochKey>,
    field: &'static str,
    lengths: &[usize],
) -> Result<SealedKeys, WireError> {
    if keys.is_empty() || keys.len() > MAX_EPOCH_KEY_RECIPIENTS {
        return Err(WireError::InvalidText {
            field,
            reason: "must seal the key to 1 to 64 devices",
        });
    }
    keys.into_iter()
        .map(|k| {
            if !lengths.contains(&k.sealed.len()) {
                return Err(WireError::InvalidText {
                    field: "sealed_epoch_key.sealed",
                    reason: "wrong length",
                });
            }
            Ok((fixed("sealed_epoch_key.device", &k.device)?, k.sealed))
        })
        .collect()
}

fn encode_sealed_keys(keys: &[([u8; 32], Vec<u8>)]) -> Vec<proto::SealedEpochKey> {
    keys.iter()
        .map(|(device, sealed)| proto::SealedEpochKey {
            device: device.to_vec(),
            sealed: sealed.clone(),
        })
        .collect()
}

fn decode_prekeys(p: proto::PrekeysCreated) -> Result<EventKind, WireError> {
    if p.keys.is_empty() || p.keys.len() > MAX_PREKEYS_PER_EVENT {
        return Err(WireError::InvalidText {
            field: "prekeys_created.keys",
            reason: "must hold 1 to 64 keys",
        });
    }
    let keys = p
        .keys
        .into_iter()
        .map(|k| {
            let kind = match proto::PrekeyKind::try_from(k.kind) {
                Ok(proto::PrekeyKind::Signed) => PrekeyKind::Signed,
                Ok(proto::PrekeyKind::OneTime) => PrekeyKind::OneTime,
                Ok(proto::PrekeyKind::Pq) => PrekeyKind::Pq,
                _ => {
                    return Err(WireError::InvalidText {
                        field: "prekey_secret.kind",
                        reason: "unknown kind",
                    });
                }
            };
            bounded("prekey_secret.secret", &k.secret, MAX_PREKEY_SECRET_LEN)?;
            if k.last_resort && kind != PrekeyKind::Pq {
                return Err(WireError::InvalidText {
                    field: "prekey_secret.last_resort",
                    reason: "only an ML-KEM key can be the last resort",
                });
            }
            bounded("prekey_secret.public", &k.public, MAX_PREKEY_LEN)?;
            Ok(PrekeySecret {
                id: k.id,
                kind,
                last_resort: k.last_resort,
                invitation: k.invitation,
                public: k.public,
                secret: SecretBytes::new(k.secret),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EventKind::PrekeysCreated {
        keys,
        invitation_mailbox: optional_id(
            "prekeys_created.invitation_mailbox",
            &p.invitation_mailbox,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> LogEvent {
        LogEvent {
            event_id: [1; 16],
            lamport: 3,
            timestamp_ms: 4,
            author: [5; 32],
            chain: ChainLink {
                stream_prev: Some([6; 32]),
                head: Some((7, [8; 32])),
            },
            kind,
        }
    }

    #[test]
    fn the_chain_link_round_trips_and_half_a_head_is_refused() {
        let e = event(EventKind::Delivered {
            envelope_id: [9; 16],
        });
        assert_eq!(LogEvent::decode(&e.encode()).unwrap(), e);
        let none = LogEvent {
            chain: ChainLink::default(),
            ..e.clone()
        };
        assert_eq!(LogEvent::decode(&none.encode()).unwrap(), none);
        let mut p: proto::LogEvent = Message::decode(&e.encode()[..]).unwrap();
        p.head_hash.clear();
        assert!(LogEvent::decode(&p.encode_to_vec()).is_err());
        let mut p: proto::LogEvent = Message::decode(&e.encode()[..]).unwrap();
        p.head_seq = 0;
        assert!(LogEvent::decode(&p.encode_to_vec()).is_err());
        let mut p: proto::LogEvent = Message::decode(&e.encode()[..]).unwrap();
        p.stream_prev = vec![1; 31];
        assert!(LogEvent::decode(&p.encode_to_vec()).is_err());
    }

    fn sent() -> SentMessage {
        SentMessage {
            file: None,
            contact: [2; 32],
            envelope_id: [3; 16],
            relay_url: "https://relay.example".into(),
            mailbox: [4; 32],
            envelope: vec![5; 100],
            sent_ms: 6,
            text: "hi".into(),
            ratchet_delta: SecretBytes::new(vec![7; 200]),
            bundled: true,
            per_device: false,
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let e = event(EventKind::Sent(Box::new(sent())));
        let shown = format!("{e:?}");
        assert!(shown.contains("SecretBytes(200 bytes)"));
        assert!(!shown.contains("7, 7, 7"));
    }

    #[test]
    fn the_largest_sent_event_fits() {
        let mut m = sent();
        m.envelope = vec![1; MAX_ENVELOPE_LEN];
        m.text = "x".repeat(crate::limits::MAX_TEXT_LEN);
        m.ratchet_delta = SecretBytes::new(vec![1; MAX_RATCHET_DELTA_LEN]);
        let e = event(EventKind::Sent(Box::new(m.clone())));
        assert!(e.encode().len() <= MAX_LOG_EVENT_LEN);
        assert_eq!(LogEvent::decode(&e.encode()).unwrap(), e);
        m.ratchet_delta = SecretBytes::new(vec![1; MAX_RATCHET_DELTA_LEN + 1]);
        assert!(matches!(
            LogEvent::decode(&event(EventKind::Sent(Box::new(m))).encode()),
            Err(WireError::TooLarge {
                what: "sent.ratchet_delta",
                ..
            })
        ));
    }

    #[test]
    fn an_event_the_fold_would_refuse_is_refused_before_sealing() {
        let mut m = sent();
        m.ratchet_delta = SecretBytes::new(vec![1; MAX_RATCHET_DELTA_LEN + 1]);
        assert!(matches!(
            event(EventKind::Sent(Box::new(m))).encode_checked(),
            Err(WireError::TooLarge {
                what: "sent.ratchet_delta",
                ..
            })
        ));
        let mut m = sent();
        m.envelope = vec![1; MAX_ENVELOPE_LEN];
        m.text = "x".repeat(crate::limits::MAX_TEXT_LEN);
        let e = event(EventKind::Sent(Box::new(m)));
        assert_eq!(e.encode_checked().unwrap(), e.encode());
    }

    #[test]
    fn a_per_device_send_carries_the_transcript_alone() {
        let mut m = sent();
        m.per_device = true;
        assert!(matches!(
            event(EventKind::Sent(Box::new(m.clone()))).encode_checked(),
            Err(WireError::InvalidText {
                field: "sent.per_device",
                ..
            })
        ));
        m.envelope.clear();
        m.ratchet_delta = SecretBytes::new(Vec::new());
        let e = event(EventKind::Sent(Box::new(m)));
        assert_eq!(e.encode_checked().unwrap(), e.encode());
    }

    #[test]
    fn prekey_events_are_bounded_and_checked() {
        let key = |kind, len| PrekeySecret {
            id: 1,
            kind,
            last_resort: false,
            invitation: false,
            public: vec![1; 1250],
            secret: SecretBytes::new(vec![2; len]),
        };
        let at_limit = event(EventKind::PrekeysCreated {
            keys: vec![key(PrekeyKind::Pq, 64); MAX_PREKEYS_PER_EVENT],
            invitation_mailbox: None,
        });
        assert!(at_limit.encode().len() <= MAX_LOG_EVENT_LEN);
        assert!(LogEvent::decode(&at_limit.encode()).is_ok());
        let oversized = event(EventKind::PrekeysCreated {
            keys: vec![key(PrekeyKind::Pq, MAX_PREKEY_SECRET_LEN + 1)],
            invitation_mailbox: None,
        });
        assert!(matches!(
            LogEvent::decode(&oversized.encode()),
            Err(WireError::TooLarge {
                what: "prekey_secret.secret",
                ..
            })
        ));
        for (keys, field) in [
            (
                vec![key(PrekeyKind::Pq, 64); MAX_PREKEYS_PER_EVENT + 1],
                "prekeys_created.keys",
            ),
            (Vec::new(), "prekeys_created.keys"),
            (
                vec![PrekeySecret {
                    last_resort: true,
                    ..key(PrekeyKind::Signed, 32)
                }],
                "prekey_secret.last_resort",
            ),
        ] {
            let e = event(EventKind::PrekeysCreated {
                keys,
                invitation_mailbox: None,
            });
            assert!(
                matches!(LogEvent::decode(&e.encode()), Err(WireError::InvalidText { field: f, .. }) if f == field),
                "{field}"
            );
        }
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in [
            EventKind::ContactUpserted {
                contact: [2; 32],
                name: "bob".into(),
                details: None,
            },
            EventKind::Sent(Box::new(sent())),
            EventKind::PrekeysCreated {
                keys: vec![PrekeySecret {
                    id: 7,
                    kind: PrekeyKind::Pq,
                    last_resort: true,
                    invitation: false,
                    public: vec![1; 1200],
                    secret: SecretBytes::new(vec![2; 64]),
                }],
                invitation_mailbox: Some([4; 32]),
            },
            EventKind::Roster {
                entry: vec![9; 100],
            },
            EventKind::ProfileUpdated {
                name: "alice".into(),
            },
            EventKind::StrategySet {
                strategy: crate::Strategy::Leaderless,
            },
            EventKind::LeaderLease {
                term: 3,
                expires_ms: 1_700_000_030_000,
            },
            EventKind::ForwardRequested {
                contact: [5; 32],
                message: FirstMessage {
                    file: None,
                    envelope_id: [6; 16],
                    sent_ms: 1_700_000_000_000,
                    text: "through the leader".into(),
                },
            },
            EventKind::RelaysUpdated {
                relays: vec!["https://relay.example".into()],
            },
            EventKind::Read {
                contact: [2; 32],
                up_to: 9,
            },
            EventKind::Delivered {
                envelope_id: [3; 16],
            },
            EventKind::EpochRotated(Box::new(rotation(2, 1))),
            EventKind::Verified {
                contact: [2; 32],
                root: Some([7; 32]),
            },
            EventKind::Verified {
                contact: [2; 32],
                root: None,
            },
            EventKind::ContactRemoved { contact: [2; 32] },
            EventKind::DeviceRenamed {
                device: [5; 32],
                name: "old phone".into(),
            },
            EventKind::TimerSet {
                contact: [2; 32],
                timer: crate::Timer {
                    set_ms: 9,
                    secs: 86_400,
                },
            },
        ] {
            let e = event(kind);
            assert_eq!(LogEvent::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn a_verified_mark_names_a_whole_root_or_none() {
        let mut p = proto::LogEvent::decode(
            &event(EventKind::Verified {
                contact: [2; 32],
                root: Some([7; 32]),
            })
            .encode()[..],
        )
        .unwrap();
        if let Some(proto::log_event::Kind::Verified(v)) = p.kind.as_mut() {
            v.root = vec![7; 31];
        }
        assert_eq!(
            LogEvent::decode(&p.encode_to_vec()),
            Err(WireError::InvalidText {
                field: "verified.root",
                reason: "wrong length"
            })
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let too_many = event(EventKind::RelaysUpdated {
            relays: vec!["https://r".into(); MAX_RELAYS + 1],
        });
        assert!(matches!(
            LogEvent::decode(&too_many.encode()),
            Err(WireError::InvalidText {
                field: "relays_updated.relay_urls",
                ..
            })
        ));
        let at_limit = event(EventKind::RelaysUpdated {
            relays: vec!["https://r".into(); MAX_RELAYS],
        });
        assert!(LogEvent::decode(&at_limit.encode()).is_ok());
        let bad_name = event(EventKind::ProfileUpdated {
            name: "\u{1b}[2J".into(),
        });
        assert!(LogEvent::decode(&bad_name.encode()).is_err());
        let mut short = proto::LogEvent::decode(
            &event(EventKind::Delivered {
                envelope_id: [0; 16],
            })
            .encode()[..],
        )
        .unwrap();
        short.author = vec![1; 31];
        assert_eq!(
            LogEvent::decode(&short.encode_to_vec()),
            Err(WireError::InvalidText {
                field: "log_event.author",
                reason: "wrong length"
            })
        );
        assert!(matches!(
            LogEvent::decode(&vec![0; MAX_LOG_EVENT_LEN + 1]),
            Err(WireError::TooLarge { .. })
        ));
    }

    fn rotation(epoch: u32, devices: usize) -> EpochRotation {
        EpochRotation {
            epoch,
            revoked: 1,
            commitment: [5; 32],
            keys: (0..devices)
                .map(|i| ([i as u8; 32], vec![6; SEALED_EPOCH_KEY_LEN]))
                .collect(),
        }
    }

    #[test]
    fn mailbox_replacements_are_bounded() {
        let replaced = |n: usize| {
            event(EventKind::MailboxesReplaced {
                revocations: 1,
                mailboxes: vec![([1; 32], [2; 32]); n],
            })
        };
        let at_bound = replaced(MAX_REPLACED_MAILBOXES).encode();
        assert!(at_bound.len() <= MAX_LOG_EVENT_LEN);
        assert_eq!(
            LogEvent::decode(&at_bound).unwrap(),
            replaced(MAX_REPLACED_MAILBOXES)
        );
        match LogEvent::decode(&replaced(MAX_REPLACED_MAILBOXES + 1).encode()) {
            Err(WireError::InvalidText { field, .. }) => {
                assert_eq!(field, "mailboxes_replaced.mailboxes")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn rotations_are_bounded_and_checked() {
        let decode = |r: EpochRotation| {
            LogEvent::decode(&event(EventKind::EpochRotated(Box::new(r))).encode())
        };
        let field = |e: Result<LogEvent, WireError>| match e {
            Err(WireError::InvalidText { field, .. }) => field,
            other => panic!("expected a named field, got {other:?}"),
        };
        assert!(decode(rotation(2, MAX_EPOCH_KEY_RECIPIENTS)).is_ok());
        assert_eq!(
            field(decode(rotation(2, MAX_EPOCH_KEY_RECIPIENTS + 1))),
            "epoch_rotated.keys"
        );
        assert_eq!(field(decode(rotation(2, 0))), "epoch_rotated.keys");
        assert_eq!(field(decode(rotation(1, 1))), "epoch_rotated.epoch");
        let mut short = rotation(2, 1);
        short.keys[0].1.pop();
        assert_eq!(field(decode(short)), "sealed_epoch_key.sealed");
        let mut device = rotation(2, 1);
        device.keys[0].0 = [0; 32];
        let mut p =
            proto::LogEvent::decode(&event(EventKind::EpochRotated(Box::new(device))).encode()[..])
                .unwrap();
        if let Some(proto::log_event::Kind::EpochRotated(r)) = p.kind.as_mut() {
            r.commitment.truncate(31);
        }
        assert_eq!(
            field(LogEvent::decode(&p.encode_to_vec())),
            "epoch_rotated.commitment"
        );
    }

    #[test]
    fn a_strategy_is_one_of_the_known_names_and_nothing_else() {
        for strategy in crate::Strategy::ALL {
            let e = event(EventKind::StrategySet { strategy });
            assert_eq!(LogEvent::decode(&e.encode()).unwrap(), e);
        }
        for bad in ["", "Sequenced", "multi-home", "sequenced "] {
            let mut p = proto::LogEvent::decode(
                &event(EventKind::StrategySet {
                    strategy: crate::Strategy::Sequenced,
                })
                .encode()[..],
            )
            .unwrap();
            p.kind = Some(proto::log_event::Kind::StrategySet(proto::StrategySet {
                strategy: bad.into(),
            }));
            assert_eq!(
                LogEvent::decode(&p.encode_to_vec()),
                Err(WireError::InvalidText {
                    field: "strategy_set.strategy",
                    reason: "not a known strategy",
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_lease_term_and_a_forwarded_message_are_checked() {
        let lease = |term| {
            let mut p = proto::LogEvent::decode(
                &event(EventKind::LeaderLease {
                    term: 1,
                    expires_ms: 5,
                })
                .encode()[..],
            )
            .unwrap();
            p.kind = Some(proto::log_event::Kind::LeaderLease(proto::LeaderLease {
                term,
                expires_ms: 5,
            }));
            LogEvent::decode(&p.encode_to_vec())
        };
        assert!(lease(1).is_ok());
        assert_eq!(
            lease(0),
            Err(WireError::InvalidText {
                field: "leader_lease.term",
                reason: "terms start at 1",
            })
        );
        let forward = |contact: Vec<u8>, message: Option<proto::FirstMessage>| {
            let mut p = proto::LogEvent::decode(
                &event(EventKind::Delivered {
                    envelope_id: [1; 16],
                })
                .encode()[..],
            )
            .unwrap();
            p.kind = Some(proto::log_event::Kind::ForwardRequested(
                proto::ForwardRequested {
                    contact_id: contact,
                    message,
                },
            ));
            LogEvent::decode(&p.encode_to_vec())
        };
        let message = |id: Vec<u8>, text: &str| proto::FirstMessage {
            file: None,
            envelope_id: id,
            sent_ms: 1,
            text: text.into(),
        };
        assert!(forward(vec![1; 32], Some(message(vec![2; 16], "hi"))).is_ok());
        assert_eq!(
            forward(vec![1; 32], None),
            Err(WireError::MissingField("forward_requested.message"))
        );
        let wrong_length = |field| {
            Err(WireError::InvalidText {
                field,
                reason: "wrong length",
            })
        };
        assert_eq!(
            forward(vec![1; 31], Some(message(vec![2; 16], "hi"))),
            wrong_length("forward_requested.contact_id")
        );
        assert_eq!(
            forward(vec![1; 32], Some(message(vec![2; 15], "hi"))),
            wrong_length("first_message.envelope_id")
        );
        let long = "x".repeat(crate::limits::MAX_TEXT_LEN + 1);
        assert!(forward(vec![1; 32], Some(message(vec![2; 16], &long))).is_err());
    }
}
