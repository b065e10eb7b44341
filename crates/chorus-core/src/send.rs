//! A sequenced send, decided in the core (DESIGN §6).
//!
//! A device sends by appending a `Sent` event guarded on the contact's session stream at
//! the version it folded: the event escrows the transcript, the ratchet delta and the
//! exact envelope, so every sibling can apply the send and any of them can post it. Two
//! devices that encrypt on the same folded session produce two records at one version;
//! the relay accepts one, and the loser folds the winner's and encrypts again. What is
//! decided here — which version the guard names, what the envelope and the escrow hold —
//! is pure: the client reads the session and the contact's addresses from its store,
//! calls [`Constellation::plan_send`], and appends what it returns.
//!
//! A first contact is decided here too: [`propose_contact`] turns a decrypted first
//! message into the guarded events that create the contact and answer it.

use chorus_crypto::{EpochKey, RootPublicKey};
use chorus_wire::{
    ContactDetails, Envelope, EventKind, FirstMessage, Hello, IdentityKeys, IdentityRoll, Payload,
    SecretBytes, SentMessage,
};
use rand_core::CryptoRng;

use crate::SessionError;
use crate::fold::{Constellation, session_stream};
use crate::session::{EncryptedMessage, MessageKind, SendDelta, Session};

/// Where a message to a contact goes.
pub struct Recipient<'a> {
    /// The contact's root key (its session stream is named by it).
    pub root: [u8; 32],
    /// The relay of the contact's mailbox.
    pub relay_url: &'a str,
    /// The mailbox to post to.
    pub mailbox: [u8; 32],
}

/// An event ready to append and the guard it must be appended under.
pub struct Guarded {
    /// The event.
    pub event: EventKind,
    /// The session stream's name (the guard's stream, before keying).
    pub stream: Vec<u8>,
    /// The version the guard expects: the stream as this state folded it.
    pub version: i64,
}

/// One outgoing message, before encryption.
pub struct Outgoing<'a> {
    /// Where it goes.
    pub to: Recipient<'a>,
    /// Its envelope id (chosen once: a re-encryption after a lost race keeps it).
    pub envelope_id: [u8; 16],
    /// The text (a caption when a file goes with it, maybe empty).
    pub text: &'a str,
    /// The file sent with it.
    pub file: Option<&'a chorus_wire::Attachment>,
    /// Our hello, carried until the contact is known to have it.
    pub hello: Option<Hello>,
    /// Our identity rolls the contact may not have yet, oldest first.
    pub rolls: Vec<IdentityRoll>,
    /// The contact's root as we now hold it, answering the rolls they sent.
    pub roll_seen: Option<RootPublicKey>,
    /// Our display name, told in every message.
    pub name: Option<String>,
    /// The conversation's disappearing-message timer, told in every message once set.
    pub timer: Option<chorus_wire::Timer>,
    /// Now (milliseconds since the Unix epoch).
    pub now_ms: u64,
    /// Take a fresh DH step rather than continue the open chain
    /// ([`Session::step_on_next_send`]; `leaderless`).
    pub fresh_step: bool,
}

impl Constellation {
    /// Encrypts `m` on `session` — which must be the contact's session as this state
    /// folded it — into the `Sent` event that escrows it, guarded on the session stream
    /// at the folded version. `session` moves on by one send; the caller keeps it only
    /// through the fold.
    ///
    /// After a revocation the session heals first ([`Session::begin_heal`]).
    ///
    /// A message to a mailbox on `home_relay` (the identity's own relay, which also
    /// holds the log) is marked `bundled`: its envelope is to travel with the record in
    /// one atomic request, and every fold counts it delivered. Anywhere else it goes
    /// through the outbox.
    pub fn plan_send<R: CryptoRng + ?Sized>(
        &self,
        key: &EpochKey,
        m: Outgoing<'_>,
        home_relay: &str,
        session: &mut Session,
        rng: &mut R,
    ) -> Result<Guarded, SessionError> {
        let stream = session_stream(&m.to.root);
        let version = self.stream(&key.stream_tag(&stream)).version;
        let bundled = m.to.relay_url == home_relay;
        // A device revoked since the session last sent holds a copy of it: this send
        // takes a fresh DH step and heals from it (every sibling does the same when it
        // folds the send).
        session.begin_heal(self.roster().revoked_count());
        let mut event = seal_send(m, session, rng)?;
        if let EventKind::Sent(sent) = &mut event {
            sent.bundled = bundled;
        }
        Ok(Guarded {
            event,
            stream,
            version,
        })
    }
}

/// Encrypts `m` on `session` (which moves on by one send) into the `Sent` event that
/// escrows it. [`Constellation::plan_send`] adds the guard.
pub fn seal_send<R: CryptoRng + ?Sized>(
    m: Outgoing<'_>,
    session: &mut Session,
    rng: &mut R,
) -> Result<EventKind, SessionError> {
    let payload = Payload {
        sent_ms: m.now_ms,
        text: m.text.to_owned(),
        hello: m.hello,
        rolls: m.rolls,
        roll_seen: m.roll_seen,
        name: m.name,
        timer: m.timer,
        file: m.file.cloned(),
    }
    .encode()?;
    if m.fresh_step {
        session.step_on_next_send();
    }
    let (message, delta) = session.encrypt_escrowed(&payload, rng)?;
    Ok(sent_event(
        &m.to,
        m.envelope_id,
        &message,
        m.now_ms,
        (m.text, m.file),
        &delta,
    ))
}

/// The `Sent` event for an encrypted message.
pub fn sent_event(
    to: &Recipient<'_>,
    envelope_id: [u8; 16],
    message: &EncryptedMessage,
    now_ms: u64,
    (text, file): (&str, Option<&chorus_wire::Attachment>),
    delta: &SendDelta,
) -> EventKind {
    let envelope = match message.kind {
        MessageKind::Initial => Envelope::Initial(message.bytes.clone()),
        MessageKind::Ratchet => Envelope::Ratchet(message.bytes.clone()),
    }
    .encode();
    EventKind::Sent(Box::new(SentMessage {
        contact: to.root,
        envelope_id,
        relay_url: to.relay_url.to_owned(),
        mailbox: to.mailbox,
        envelope,
        sent_ms: now_ms,
        text: text.to_owned(),
        file: file.cloned(),
        ratchet_delta: SecretBytes::new(delta.as_bytes().to_vec()),
        bundled: false,
        per_device: false,
    }))
}

/// A stranger's (or an invitee's) first message as this device decrypted it: what a
/// contact proposal is built from.
pub struct FirstContact {
    /// The responder session after the message.
    pub session: Session,
    /// Who sent it.
    pub identity: IdentityKeys,
    /// Where to answer (its relay URL already checked by the caller's policy).
    pub hello: Hello,
    /// The message.
    pub first: FirstMessage,
    /// Our one-time prekeys it used (deleted once the contact is in the log).
    pub consumed: Vec<u32>,
}

/// How to make a first message a contact.
pub struct Proposal {
    /// The alias to give it.
    pub name: String,
    /// The invitation mailbox it answered, if any.
    pub invitation: Option<[u8; 32]>,
    /// The session stream's version to create at: 0 for a new contact, the folded
    /// version for a known one (a second handshake).
    pub at: i64,
    /// The handshake lost to the current session (`handshakes`): keep it only to read,
    /// and do not answer.
    pub read_only: bool,
    /// Our hello, naming the mailbox we create for this contact.
    pub ours: Hello,
    /// The envelope id of our answer.
    pub answer_id: [u8; 16],
    /// Now (milliseconds since the Unix epoch).
    pub now_ms: u64,
}

/// The events that make `first` a contact (with its session after the first message,
/// and the message itself) and answer it with our hello, guarded at versions `at` and
/// `at + 1` of the contact's session stream: when several devices propose at once,
/// exactly one creation and one answer win. A `read_only` proposal has no answer.
pub fn propose_contact<R: CryptoRng + ?Sized>(
    first: FirstContact,
    p: Proposal,
    rng: &mut R,
) -> Result<Vec<Guarded>, SessionError> {
    let FirstContact {
        mut session,
        identity,
        hello,
        first,
        consumed,
    } = first;
    let root = *identity.root.as_bytes();
    let snapshot = session.snapshot();
    let recv = p.ours.mailbox.0;
    let answer = Payload {
        sent_ms: p.now_ms,
        text: String::new(),
        hello: Some(p.ours),
        rolls: Vec::new(),
        roll_seen: None,
        name: None,
        timer: None,
        file: None,
    }
    .encode()?;
    let (message, delta) = session.encrypt_escrowed(&answer, rng)?;
    let stream = session_stream(&root);
    let created = EventKind::ContactUpserted {
        contact: root,
        name: p.name,
        details: Some(Box::new(ContactDetails {
            identity,
            relay_url: hello.relay_url.clone(),
            send_mailbox: hello.mailbox.0,
            recv_mailbox: recv,
            invitation: p.invitation,
            session: SecretBytes::new(snapshot.to_vec()),
            first: Some(first),
            consumed_prekeys: consumed,
            added_ms: p.now_ms,
            read_only: p.read_only,
        })),
    };
    let mut out = vec![Guarded {
        event: created,
        stream: stream.clone(),
        version: p.at,
    }];
    if !p.read_only {
        let to = Recipient {
            root,
            relay_url: &hello.relay_url,
            mailbox: hello.mailbox.0,
        };
        out.push(Guarded {
            event: sent_event(&to, p.answer_id, &message, p.now_ms, ("", None), &delta),
            stream,
            version: p.at.saturating_add(1),
        });
    }
    Ok(out)
}
