//! Message requests: what a stranger's first message becomes (DESIGN §5, "Strangers
//! are requests").
//!
//! Anyone who knows the identity's address can write to its intro mailbox. If that
//! made a contact at once, every stranger would cost every device log records, a
//! mailbox at the relay and an automatic reply posted to a relay URL the stranger
//! chose — a flood that stalls sending and steers the devices at any host. So a
//! first message to the intro mailbox is only *held*: decrypted (the handshake
//! authenticates the sender), sealed in this device's store with the responder session
//! and shown, with no contact, mailbox, log record or reply. Every device holds its
//! own copy (responding is deterministic, so all derive the same session), and the
//! decision goes through the log so all agree:
//!
//! - **accept** appends the same guarded `ContactUpserted` + hello `Sent` pair an
//!   answered invitation does; every device that folds it moves its held messages into
//!   the history and drops the request;
//! - **block** appends a `Blocked` register (last writer wins); every device drops the
//!   request, and the identity's later first messages are refused.
//!
//! At most [`MAX_PENDING_REQUESTS`] wait at once (the oldest is dropped, and counted),
//! each with at most [`MAX_REQUEST_MESSAGES`] messages. Invitations are not requests:
//! whoever answers one was given the code by the user.

use chorus_core::EncryptedMessage;
use chorus_crypto::Fingerprint;
use chorus_relay_api::EnvelopeOut;
use chorus_wire::{EventKind, FirstMessage, Hello, IdentityKeys, MailboxId, Payload};
use serde::Serialize;
use sqlx::SqliteConnection;

use super::{Device, RECEIVED_PER_APPEND};
use crate::ClientError;
use crate::event::Event;
use crate::log::Pending;
use crate::store::contacts::contact_named_by;
use crate::store::log_state::register;
use crate::store::requests::drop_oldest_requests;
use chorus_core::FirstContact;

/// Message requests held at once; a new one beyond this drops the oldest (counted in
/// [`Requests::dropped`]).
pub const MAX_PENDING_REQUESTS: i64 = 32;
/// Messages one request holds; later ones from the same stranger are refused until
/// the request is accepted.
pub const MAX_REQUEST_MESSAGES: i64 = 16;

/// A pending message request, as `chorus requests` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Request {
    /// What `chorus requests accept|block` names (local to this device).
    pub id: i64,
    /// The name the stranger gave (a suggestion; shown, never trusted).
    pub name: String,
    /// Their fingerprint, to compare out of band.
    pub fingerprint: String,
    /// When the first message arrived here.
    pub received_ms: i64,
    /// The messages held, oldest first.
    pub messages: Vec<RequestMessage>,
}

/// One message of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestMessage {
    /// The text.
    pub text: String,
    /// The sender's clock.
    pub sent_ms: i64,
}

/// The pending requests and how many were dropped for room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Oldest first.
    pub pending: Vec<Request>,
    /// Requests dropped because [`MAX_PENDING_REQUESTS`] were waiting.
    pub dropped: i64,
}

impl Device {
    /// Whether the identity `root` is blocked (as folded).
    pub(crate) async fn is_blocked(
        &self,
        conn: &mut SqliteConnection,
        root: &[u8; 32],
    ) -> Result<bool, ClientError> {
        let value = register(conn, &chorus_core::blocked_register(root)).await?;
        Ok(value.as_deref() == Some(&[1]))
    }

    /// The pending message requests, oldest first.
    pub async fn requests(&self) -> Result<Requests, ClientError> {
        let rows = self.store.request_summaries().await?;
        let mut pending = Vec::with_capacity(rows.len());
        for (id, identity, name, received_ms) in rows {
            let identity = IdentityKeys::decode(&identity)?;
            let messages = self
                .store
                .held_messages(self.store.pool(), id)
                .await?
                .into_iter()
                .map(|m| RequestMessage {
                    text: m.text,
                    sent_ms: m.sent_ms,
                })
                .collect();
            pending.push(Request {
                id,
                name,
                fingerprint: Fingerprint::of(&identity.root).digits(),
                received_ms,
                messages,
            });
        }
        let dropped = self.store.requests_dropped().await?;
        Ok(Requests { pending, dropped })
    }

    /// Accepts request `id`: the stranger becomes a contact on every device (called
    /// `alias`, or the name they gave, made unique) and gets our hello. Returns the
    /// contact's alias.
    pub async fn accept_request(
        &self,
        id: i64,
        alias: Option<&str>,
    ) -> Result<String, ClientError> {
        let alias = alias.map(chorus_wire::normalize_display_name);
        if let Some(alias) = &alias {
            chorus_wire::check_display_name("contact name", alias)?;
            if self
                .store
                .contact_row(self.store.pool(), alias)
                .await?
                .is_some()
            {
                return Err(ClientError::ContactNameTaken(alias.clone()));
            }
        }
        let (root, first, later) = self.held(id).await?;
        let name = alias.unwrap_or_else(|| first.hello.name.clone());
        // At 0, or where a removal of them left their stream.
        let mut conn = self.store.pool().acquire().await?;
        let at =
            crate::store::log_state::session_stream_version(&mut conn, &self.store, &root).await?;
        drop(conn);
        self.append(self.contact_proposal(first, name, None, at, false)?)
            .await?;
        // The session escrowed with the contact is past every held message: a sibling
        // that never held this request reads them from the log, not the mailbox. (A
        // few per append: each may be a 30,000-byte text.)
        if contact_named_by(self.store.pool(), &root).await?.is_some() {
            let later: Vec<Pending> = later
                .into_iter()
                .map(|(message, position)| {
                    Pending::free(EventKind::Received {
                        contact: root,
                        message,
                        position,
                    })
                })
                .collect();
            let mut later = later.into_iter().peekable();
            while later.peek().is_some() {
                self.append(later.by_ref().take(RECEIVED_PER_APPEND).collect())
                    .await?;
            }
        }
        let folded = contact_named_by(self.store.pool(), &root).await?;
        let alias = folded.ok_or(ClientError::Contended)?;
        // Our hello (and any queued message) goes out now; a failure stays queued.
        self.flush_outbox().await?;
        Ok(alias)
    }

    /// Blocks the sender of request `id` on every device: the request is dropped and
    /// their first messages are refused from now on. Returns the name they gave.
    pub async fn block_request(&self, id: i64) -> Result<String, ClientError> {
        let (root, name) = self
            .store
            .request_sender(id)
            .await?
            .ok_or(ClientError::UnknownRequest(id))?;
        self.append(vec![Pending::free(EventKind::Blocked {
            contact: root,
            blocked: true,
        })])
        .await?;
        Ok(name)
    }

    /// Request `id` as it was held: the stranger's root key, the first contact to
    /// propose, and the messages after the first (with their mailbox positions).
    async fn held(
        &self,
        id: i64,
    ) -> Result<([u8; 32], FirstContact, Vec<(FirstMessage, u64)>), ClientError> {
        let held = self
            .store
            .held_request(id)
            .await?
            .ok_or(ClientError::UnknownRequest(id))?;
        let corrupt = |what: &str| ClientError::Corrupt(format!("request {what}"));
        let mut messages = self
            .store
            .held_messages(self.store.pool(), id)
            .await?
            .into_iter()
            .map(|m| {
                Ok((
                    FirstMessage {
                        envelope_id: m
                            .envelope_id
                            .try_into()
                            .map_err(|_| corrupt("envelope id"))?,
                        sent_ms: u64::try_from(m.sent_ms).unwrap_or(0),
                        text: m.text,
                        // A request keeps text only: a stranger's file is not kept.
                        file: None,
                    },
                    u64::try_from(m.position).unwrap_or(0),
                ))
            })
            .collect::<Result<Vec<_>, ClientError>>()?
            .into_iter();
        let (first, _) = messages
            .next()
            .ok_or_else(|| corrupt("without a message"))?;
        Ok((
            held.root,
            FirstContact {
                session: held.session,
                identity: IdentityKeys::decode(&held.identity)?,
                hello: Hello {
                    relay_url: held.relay_url,
                    mailbox: MailboxId(held.mailbox.try_into().map_err(|_| corrupt("mailbox"))?),
                    name: held.name,
                },
                first,
                consumed: serde_json::from_str(&held.consumed)
                    .map_err(|_| corrupt("prekey ids"))?,
            },
            messages.filter(|(m, _)| !m.text.is_empty()).collect(),
        ))
    }

    /// Holds a first message from the stranger `root` (claimed by the message; the
    /// handshake or the held session authenticates it) as a message request.
    pub(crate) async fn hold_request(
        &self,
        tx: &mut SqliteConnection,
        root: &[u8; 32],
        message: &EncryptedMessage,
        envelope: &EnvelopeOut,
        now: i64,
    ) -> Result<Vec<Event>, ClientError> {
        let (id, name, text) = match self.store.request_from(tx, root).await? {
            Some((id, name, mut session, held)) => {
                if held >= MAX_REQUEST_MESSAGES {
                    return Err(ClientError::Rejected(
                        "a message request already holds as many messages as it may",
                    ));
                }
                let payload = Payload::decode(&session.decrypt(message)?)?;
                self.store.put_request_session(tx, root, &session).await?;
                self.store
                    .insert_request_message(
                        tx,
                        id,
                        &envelope.envelope_id.0,
                        &payload.text,
                        payload.sent_ms,
                        envelope.seq,
                    )
                    .await?;
                (id, name, payload.text)
            }
            None => {
                let first = self.open_first_contact(tx, message, envelope).await?;
                if first.identity.root.as_bytes() != root {
                    return Err(ClientError::Rejected(
                        "a first message whose sender is not the identity it names",
                    ));
                }
                let id = self.store.insert_request(tx, root, &first, now).await?;
                self.store
                    .insert_request_message(
                        tx,
                        id,
                        &first.first.envelope_id,
                        &first.first.text,
                        first.first.sent_ms,
                        envelope.seq,
                    )
                    .await?;
                drop_oldest_requests(tx, MAX_PENDING_REQUESTS).await?;
                (id, first.hello.name, first.first.text)
            }
        };
        Ok(vec![Event::Request {
            request: id,
            name,
            text,
        }])
    }
}
