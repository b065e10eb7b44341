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

use chorus_crypto::EpochKey;
use chorus_wire::{Envelope, EventKind, Hello, Payload, SecretBytes, SentMessage};
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

/// A send ready to append: the event and the guard it must be appended under.
pub struct SendPlan {
    /// The `Sent` event.
    pub event: EventKind,
    /// The session stream's name (the guard's stream, before keying).
    pub stream: Vec<u8>,
    /// The version the guard expects: the stream as this state folded it.
    pub version: i64,
}

impl Constellation {
    /// Encrypts `text` to `to` on `session` — which must be the contact's session as this
    /// state folded it — into the `Sent` event that escrows it, guarded on the session
    /// stream at the folded version. `hello` rides along until the contact has it.
    /// `session` moves on by one send; the caller keeps it only through the fold.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_send<R: CryptoRng + ?Sized>(
        &self,
        key: &EpochKey,
        to: &Recipient<'_>,
        session: &mut Session,
        envelope_id: [u8; 16],
        text: &str,
        hello: Option<Hello>,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<SendPlan, SessionError> {
        let stream = session_stream(&to.root);
        let version = self.stream(&key.stream_tag(&stream)).version;
        Ok(SendPlan {
            event: seal_send(to, session, envelope_id, text, hello, now_ms, rng)?,
            stream,
            version,
        })
    }
}

/// Encrypts `text` to `to` on `session` (which moves on by one send) into the `Sent`
/// event that escrows it. [`Constellation::plan_send`] adds the guard.
pub fn seal_send<R: CryptoRng + ?Sized>(
    to: &Recipient<'_>,
    session: &mut Session,
    envelope_id: [u8; 16],
    text: &str,
    hello: Option<Hello>,
    now_ms: u64,
    rng: &mut R,
) -> Result<EventKind, SessionError> {
    let payload = Payload {
        sent_ms: now_ms,
        text: text.to_owned(),
        hello,
    }
    .encode()?;
    let (message, delta) = session.encrypt_escrowed(&payload, rng)?;
    Ok(sent_event(to, envelope_id, &message, now_ms, text, &delta))
}

/// The `Sent` event for an encrypted message.
pub fn sent_event(
    to: &Recipient<'_>,
    envelope_id: [u8; 16],
    message: &EncryptedMessage,
    now_ms: u64,
    text: &str,
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
        ratchet_delta: SecretBytes::new(delta.as_bytes().to_vec()),
        bundled: false,
    }))
}
