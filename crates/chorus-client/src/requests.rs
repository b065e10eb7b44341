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

use chorus_core::{EncryptedMessage, Session};
use chorus_crypto::Fingerprint;
use chorus_relay_api::EnvelopeOut;
use chorus_wire::{EventKind, FirstMessage, Hello, IdentityKeys, MailboxId, Payload};
use serde::Serialize;
use sqlx::SqliteConnection;

use crate::event::Event;
use crate::log::Pending;
use crate::store::requests::delete_request;
use crate::store::row;
use crate::{ClientError, Device};
use chorus_core::FirstContact;

/// Message requests held at once; a new one beyond this drops the oldest (counted in
/// [`Requests::dropped`]).
pub const MAX_PENDING_REQUESTS: i64 = 32;
/// Messages one request holds; later ones from the same stranger are refused until
/// the request is accepted.
pub const MAX_REQUEST_MESSAGES: i64 = 16;

/// Held messages carried to the siblings per append when a request is accepted.
const RECEIVED_PER_APPEND: usize = 4;

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

/// `requests`: root, identity, name, relay URL, mailbox, consumed ids, generation, sealed.
type RequestRow = (
    Vec<u8>,
    Vec<u8>,
    String,
    String,
    Vec<u8>,
    String,
    i64,
    Vec<u8>,
);

impl Device {
    /// Whether the identity `root` is blocked (as folded).
    pub(crate) async fn is_blocked(
        &self,
        conn: &mut SqliteConnection,
        root: &[u8; 32],
    ) -> Result<bool, ClientError> {
        let value: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM registers WHERE name = $1")
                .bind(chorus_core::blocked_register(root))
                .fetch_optional(&mut *conn)
                .await?;
        Ok(value.as_deref() == Some(&[1]))
    }

    /// The pending message requests, oldest first.
    pub async fn requests(&self) -> Result<Requests, ClientError> {
        let rows: Vec<(i64, Vec<u8>, String, i64)> =
            sqlx::query_as("SELECT id, identity, name, received_ms FROM requests ORDER BY id")
                .fetch_all(self.store.pool())
                .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for (id, identity, name, received_ms) in rows {
            let identity = IdentityKeys::decode(&identity)?;
            let messages: Vec<(Vec<u8>, i64, Vec<u8>)> = sqlx::query_as(
                "SELECT envelope_id, sent_ms, sealed FROM request_messages
                 WHERE request = $1 ORDER BY position",
            )
            .bind(id)
            .fetch_all(self.store.pool())
            .await?;
            let messages = messages
                .into_iter()
                .map(|(envelope_id, sent_ms, sealed)| {
                    let text = self.store.open_sealed(
                        "request_message",
                        &row::request_message(&envelope_id, id),
                        &sealed,
                    )?;
                    Ok(RequestMessage {
                        text: String::from_utf8_lossy(&text).into_owned(),
                        sent_ms,
                    })
                })
                .collect::<Result<_, ClientError>>()?;
            pending.push(Request {
                id,
                name,
                fingerprint: Fingerprint::of(&identity.root).digits(),
                received_ms,
                messages,
            });
        }
        let dropped: i64 =
            sqlx::query_scalar("SELECT requests_dropped FROM constellation WHERE id = 1")
                .fetch_one(self.store.pool())
                .await?;
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
            if self.contact_row(self.store.pool(), alias).await?.is_some() {
                return Err(ClientError::ContactNameTaken(alias.clone()));
            }
        }
        let (root, first, later) = self.held(id).await?;
        let name = alias.unwrap_or_else(|| first.hello.name.clone());
        self.append(self.contact_proposal(first, name, None, 0, false)?)
            .await?;
        // The session escrowed with the contact is past every held message: a sibling
        // that never held this request reads them from the log, not the mailbox. (A
        // few per append: each may be a 32,000-byte text.)
        let contact_exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM contacts WHERE root_key = $1")
                .bind(&root[..])
                .fetch_optional(self.store.pool())
                .await?;
        if contact_exists.is_some() {
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
        let folded = crate::store::contacts::contact_named_by(self.store.pool(), &root).await?;
        let alias = folded.ok_or(ClientError::Contended)?;
        // Our hello (and any queued message) goes out now; a failure stays queued.
        self.flush_outbox().await?;
        Ok(alias)
    }

    /// Blocks the sender of request `id` on every device: the request is dropped and
    /// their first messages are refused from now on. Returns the name they gave.
    pub async fn block_request(&self, id: i64) -> Result<String, ClientError> {
        let row: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT root_key, name FROM requests WHERE id = $1")
                .bind(id)
                .fetch_optional(self.store.pool())
                .await?;
        let (root, name) = row.ok_or(ClientError::UnknownRequest(id))?;
        self.append(vec![Pending::free(EventKind::Blocked {
            contact: root_key(&root)?,
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
        let row: Option<RequestRow> = sqlx::query_as(
            "SELECT root_key, identity, name, relay_url, mailbox, consumed, generation, sealed
             FROM requests WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.store.pool())
        .await?;
        let (root, identity, name, relay_url, mailbox, consumed, generation, sealed) =
            row.ok_or(ClientError::UnknownRequest(id))?;
        let root = root_key(&root)?;
        let session = self.request_session(&root, generation, &sealed)?;
        let rows: Vec<(Vec<u8>, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT envelope_id, sent_ms, position, sealed FROM request_messages
             WHERE request = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(self.store.pool())
        .await?;
        let corrupt = |what: &str| ClientError::Corrupt(format!("request {what}"));
        let mut messages = rows
            .into_iter()
            .map(|(envelope_id, sent_ms, position, sealed)| {
                let text = self.store.open_sealed(
                    "request_message",
                    &row::request_message(&envelope_id, id),
                    &sealed,
                )?;
                Ok((
                    FirstMessage {
                        envelope_id: envelope_id.try_into().map_err(|_| corrupt("envelope id"))?,
                        sent_ms: u64::try_from(sent_ms).unwrap_or(0),
                        text: String::from_utf8(text.to_vec()).map_err(|_| corrupt("text"))?,
                    },
                    u64::try_from(position).unwrap_or(0),
                ))
            })
            .collect::<Result<Vec<_>, ClientError>>()?
            .into_iter();
        let (first, _) = messages
            .next()
            .ok_or_else(|| corrupt("without a message"))?;
        Ok((
            root,
            FirstContact {
                session,
                identity: IdentityKeys::decode(&identity)?,
                hello: Hello {
                    relay_url,
                    mailbox: MailboxId(mailbox.try_into().map_err(|_| corrupt("mailbox"))?),
                    name,
                },
                first,
                consumed: serde_json::from_str(&consumed).map_err(|_| corrupt("prekey ids"))?,
            },
            messages.filter(|(m, _)| !m.text.is_empty()).collect(),
        ))
    }

    fn request_session(
        &self,
        root: &[u8; 32],
        generation: i64,
        sealed: &[u8],
    ) -> Result<Session, ClientError> {
        let known =
            u64::try_from(generation).map_err(|_| ClientError::Corrupt("generation".into()))?;
        let snapshot = self
            .store
            .open_sealed("request", &row::request(root, known), sealed)?;
        Ok(Session::restore(&snapshot, known)?)
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
        let existing: Option<(i64, String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, name, generation, sealed FROM requests WHERE root_key = $1")
                .bind(&root[..])
                .fetch_optional(&mut *tx)
                .await?;
        let (id, name, text) = match existing {
            Some((id, name, generation, sealed)) => {
                let held: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM request_messages WHERE request = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                if held >= MAX_REQUEST_MESSAGES {
                    return Err(ClientError::Rejected(
                        "a message request already holds as many messages as it may",
                    ));
                }
                let mut session = self.request_session(root, generation, &sealed)?;
                let payload = Payload::decode(&session.decrypt(message)?)?;
                self.put_request_session(tx, root, &session).await?;
                self.insert_request_message(
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
                let snapshot = first.session.snapshot();
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO requests (root_key, identity, name, relay_url, mailbox,
                       consumed, generation, sealed, received_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(&root[..])
                .bind(first.identity.encode())
                .bind(&first.hello.name)
                .bind(&first.hello.relay_url)
                .bind(&first.hello.mailbox.0[..])
                .bind(serde_json::to_string(&first.consumed).unwrap_or_default())
                .bind(i64::try_from(first.session.generation()).unwrap_or(i64::MAX))
                .bind(self.store.seal(
                    "request",
                    &row::request(root, first.session.generation()),
                    &snapshot,
                ))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                self.insert_request_message(
                    tx,
                    id,
                    &first.first.envelope_id,
                    &first.first.text,
                    first.first.sent_ms,
                    envelope.seq,
                )
                .await?;
                drop_oldest_requests(tx).await?;
                (id, first.hello.name, first.first.text)
            }
        };
        Ok(vec![Event::Request {
            request: id,
            name,
            text,
        }])
    }

    async fn put_request_session(
        &self,
        tx: &mut SqliteConnection,
        root: &[u8; 32],
        session: &Session,
    ) -> Result<(), ClientError> {
        sqlx::query("UPDATE requests SET generation = $1, sealed = $2 WHERE root_key = $3")
            .bind(i64::try_from(session.generation()).unwrap_or(i64::MAX))
            .bind(self.store.seal(
                "request",
                &row::request(root, session.generation()),
                &session.snapshot(),
            ))
            .bind(&root[..])
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn insert_request_message(
        &self,
        tx: &mut SqliteConnection,
        request: i64,
        envelope_id: &[u8; 16],
        text: &str,
        sent_ms: u64,
        position: i64,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT OR IGNORE INTO request_messages (envelope_id, request, sent_ms, position, sealed)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&envelope_id[..])
        .bind(request)
        .bind(i64::try_from(sent_ms).unwrap_or(i64::MAX))
        .bind(position)
        .bind(
            self.store.seal(
                "request_message",
                &row::request_message(envelope_id, request),
                text.as_bytes(),
            ),
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Keeps at most [`MAX_PENDING_REQUESTS`], dropping (and counting) the oldest.
async fn drop_oldest_requests(tx: &mut SqliteConnection) -> Result<(), ClientError> {
    let over: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM requests ORDER BY id DESC LIMIT -1 OFFSET $1")
            .bind(MAX_PENDING_REQUESTS)
            .fetch_all(&mut *tx)
            .await?;
    for id in &over {
        delete_request(tx, *id).await?;
    }
    if !over.is_empty() {
        sqlx::query(
            "UPDATE constellation SET requests_dropped = requests_dropped + $1 WHERE id = 1",
        )
        .bind(i64::try_from(over.len()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn root_key(bytes: &[u8]) -> Result<[u8; 32], ClientError> {
    bytes
        .try_into()
        .map_err(|_| ClientError::Corrupt("request identity".into()))
}
