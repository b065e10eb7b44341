//! Message requests: a stranger's held first message, its responder session and the
//! messages after it, sealed on this device only (see the `requests` module). The fold
//! ends them: a request from an identity that became a contact joins the history; a
//! blocked identity's request is dropped.

use chorus_core::{FirstContact, Session};
use sqlx::SqliteConnection;

use super::{Store, row};
use crate::ClientError;

/// A request as listed: id, the sender's identity keys, the name they gave, when it
/// arrived.
pub(crate) type RequestSummary = (i64, Vec<u8>, String, i64);

/// A held message, opened.
pub(crate) struct HeldMessage {
    pub(crate) envelope_id: Vec<u8>,
    pub(crate) sent_ms: i64,
    pub(crate) position: i64,
    pub(crate) text: String,
}

/// A request whole: what accepting it proposes.
pub(crate) struct HeldRequest {
    pub(crate) root: [u8; 32],
    pub(crate) identity: Vec<u8>,
    pub(crate) name: String,
    pub(crate) relay_url: String,
    pub(crate) mailbox: Vec<u8>,
    /// The prekey ids the first message consumed, as JSON.
    pub(crate) consumed: String,
    pub(crate) session: Session,
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

impl Store {
    /// The pending requests, oldest first.
    pub(crate) async fn request_summaries(&self) -> Result<Vec<RequestSummary>, ClientError> {
        Ok(
            sqlx::query_as("SELECT id, identity, name, received_ms FROM requests ORDER BY id")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Requests dropped for room so far.
    pub(crate) async fn requests_dropped(&self) -> Result<i64, ClientError> {
        Ok(
            sqlx::query_scalar("SELECT requests_dropped FROM constellation WHERE id = 1")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Requests waiting.
    pub(crate) async fn request_count(&self) -> Result<i64, ClientError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(self.pool())
            .await?)
    }

    /// The messages request `id` holds, in mailbox order, opened.
    pub(crate) async fn held_messages<'e, E: sqlx::SqliteExecutor<'e>>(
        &self,
        executor: E,
        id: i64,
    ) -> Result<Vec<HeldMessage>, ClientError> {
        let rows: Vec<(Vec<u8>, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT envelope_id, sent_ms, position, sealed FROM request_messages
             WHERE request = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(executor)
        .await?;
        rows.into_iter()
            .map(|(envelope_id, sent_ms, position, sealed)| {
                let text = self.open_sealed(
                    "request_message",
                    &row::request_message(&envelope_id, id),
                    &sealed,
                )?;
                Ok(HeldMessage {
                    text: String::from_utf8(text.to_vec())
                        .map_err(|_| ClientError::Corrupt("request text".into()))?,
                    envelope_id,
                    sent_ms,
                    position,
                })
            })
            .collect()
    }

    /// Request `id`, its session opened.
    pub(crate) async fn held_request(&self, id: i64) -> Result<Option<HeldRequest>, ClientError> {
        let row: Option<RequestRow> = sqlx::query_as(
            "SELECT root_key, identity, name, relay_url, mailbox, consumed, generation, sealed
             FROM requests WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some((root, identity, name, relay_url, mailbox, consumed, generation, sealed)) = row
        else {
            return Ok(None);
        };
        let root = root_key(&root)?;
        Ok(Some(HeldRequest {
            session: self.request_session(&root, generation, &sealed)?,
            root,
            identity,
            name,
            relay_url,
            mailbox,
            consumed,
        }))
    }

    /// Who sent request `id`: their root key and the name they gave.
    pub(crate) async fn request_sender(
        &self,
        id: i64,
    ) -> Result<Option<([u8; 32], String)>, ClientError> {
        let row: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT root_key, name FROM requests WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        row.map(|(root, name)| Ok((root_key(&root)?, name)))
            .transpose()
    }

    /// The request from `root`, if one is held: its id, the name given, its session
    /// and how many messages it holds.
    pub(crate) async fn request_from(
        &self,
        tx: &mut SqliteConnection,
        root: &[u8; 32],
    ) -> Result<Option<(i64, String, Session, i64)>, ClientError> {
        let existing: Option<(i64, String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, name, generation, sealed FROM requests WHERE root_key = $1")
                .bind(&root[..])
                .fetch_optional(&mut *tx)
                .await?;
        let Some((id, name, generation, sealed)) = existing else {
            return Ok(None);
        };
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM request_messages WHERE request = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        let session = self.request_session(root, generation, &sealed)?;
        Ok(Some((id, name, session, held)))
    }

    fn request_session(
        &self,
        root: &[u8; 32],
        generation: i64,
        sealed: &[u8],
    ) -> Result<Session, ClientError> {
        let known =
            u64::try_from(generation).map_err(|_| ClientError::Corrupt("generation".into()))?;
        let snapshot = self.open_sealed("request", &row::request(root, known), sealed)?;
        Ok(Session::restore(&snapshot, known)?)
    }

    /// Holds `first` from `root` as a new request received at `now`; returns its id.
    pub(crate) async fn insert_request(
        &self,
        tx: &mut SqliteConnection,
        root: &[u8; 32],
        first: &FirstContact,
        now: i64,
    ) -> Result<i64, ClientError> {
        let snapshot = first.session.snapshot();
        Ok(sqlx::query_scalar(
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
        .bind(self.seal(
            "request",
            &row::request(root, first.session.generation()),
            &snapshot,
        ))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?)
    }

    /// The request from `root` moved on to `session`.
    pub(crate) async fn put_request_session(
        &self,
        tx: &mut SqliteConnection,
        root: &[u8; 32],
        session: &Session,
    ) -> Result<(), ClientError> {
        sqlx::query("UPDATE requests SET generation = $1, sealed = $2 WHERE root_key = $3")
            .bind(i64::try_from(session.generation()).unwrap_or(i64::MAX))
            .bind(self.seal(
                "request",
                &row::request(root, session.generation()),
                &session.snapshot(),
            ))
            .bind(&root[..])
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// One more message held by `request` (once per envelope id).
    pub(crate) async fn insert_request_message(
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
        .bind(self.seal(
            "request_message",
            &row::request_message(envelope_id, request),
            text.as_bytes(),
        ))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// A blocked identity's message request, if this device holds one, is dropped.
    pub(crate) async fn drop_request_of(
        &self,
        tx: &mut SqliteConnection,
        root: &[u8; 32],
    ) -> Result<(), ClientError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM requests WHERE root_key = $1")
            .bind(&root[..])
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(id) = id {
            delete_request(tx, id).await?;
        }
        Ok(())
    }

    /// The fold made `root` a contact called `alias`: this device's request from them
    /// (if any) ends, its messages joining the history.
    pub(crate) async fn settle_request(
        &self,
        tx: &mut SqliteConnection,
        root: &[u8; 32],
        alias: &str,
        stored_ms: i64,
    ) -> Result<(), ClientError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM requests WHERE root_key = $1")
            .bind(&root[..])
            .fetch_optional(&mut *tx)
            .await?;
        let Some(id) = id else {
            return Ok(());
        };
        for m in self.held_messages(&mut *tx, id).await? {
            if !m.text.is_empty() {
                self.insert_message(
                    tx,
                    alias,
                    false,
                    &m.envelope_id,
                    (&m.text, None),
                    m.sent_ms,
                    stored_ms,
                    m.position,
                )
                .await?;
            }
        }
        delete_request(tx, id).await
    }
}

/// Keeps at most `keep` requests, dropping (and counting) the oldest.
pub(crate) async fn drop_oldest_requests(
    tx: &mut SqliteConnection,
    keep: i64,
) -> Result<(), ClientError> {
    let over: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM requests ORDER BY id DESC LIMIT -1 OFFSET $1")
            .bind(keep)
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

/// Deletes a request and its held messages.
pub(crate) async fn delete_request(tx: &mut SqliteConnection, id: i64) -> Result<(), ClientError> {
    sqlx::query("DELETE FROM request_messages WHERE request = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM requests WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn root_key(bytes: &[u8]) -> Result<[u8; 32], ClientError> {
    bytes
        .try_into()
        .map_err(|_| ClientError::Corrupt("request identity".into()))
}
