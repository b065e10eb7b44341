//! History rows written in batches — by the fold (sent messages, received ones a
//! sibling logged, first messages) and by receiving a backlog — with one multi-row
//! `INSERT … RETURNING` per chunk, so the caller learns which were new (and tells the
//! person only of those).

use std::collections::HashSet;

use sqlx::SqliteConnection;

use chorus_wire::Attachment;

use super::row;
use super::{body, log_state};
use crate::{ClientError, Delivery, Event, FileInfo};

/// A history entry waiting in the page, and the event to raise if it is new.
pub(crate) struct HistoryRow {
    pub(crate) alias: String,
    pub(crate) outgoing: bool,
    pub(crate) envelope_id: [u8; 16],
    pub(crate) sealed: Vec<u8>,
    pub(crate) sent_ms: i64,
    pub(crate) stored_ms: i64,
    pub(crate) position: i64,
    /// Index into the page's events, if the person hears of it.
    pub(crate) event: Option<usize>,
}

/// Inserts history rows unless one with the envelope id exists; returns the ids
/// inserted.
pub(crate) async fn insert_history(
    tx: &mut SqliteConnection,
    rows: &[HistoryRow],
) -> Result<HashSet<[u8; 16]>, ClientError> {
    let mut inserted = HashSet::new();
    for chunk in rows.chunks(200) {
        let sql = log_state::values_sql(
            "INSERT OR IGNORE INTO messages (contact, outgoing, envelope_id, sent_ms, stored_ms, sealed, position)",
            "RETURNING envelope_id",
            7,
            chunk.len(),
        );
        let mut q = sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql));
        for h in chunk {
            q = q
                .bind(&h.alias)
                .bind(h.outgoing)
                .bind(&h.envelope_id[..])
                .bind(h.sent_ms)
                .bind(h.stored_ms)
                .bind(&h.sealed)
                .bind(h.position);
        }
        for id in q.fetch_all(&mut *tx).await? {
            if let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) {
                inserted.insert(id);
            }
        }
    }
    Ok(inserted)
}

/// Inserts history rows and withdraws the event of each row that was not new.
pub(crate) async fn insert_and_tell(
    tx: &mut SqliteConnection,
    rows: &[HistoryRow],
    events: &mut [Option<Event>],
) -> Result<(), ClientError> {
    let inserted = insert_history(tx, rows).await?;
    for h in rows {
        if let Some(i) = h.event
            && !inserted.contains(&h.envelope_id)
            && let Some(slot) = events.get_mut(i)
        {
            *slot = None;
        }
    }
    Ok(())
}

impl super::Store {
    /// Adds a history entry unless one with this envelope id exists; returns whether it
    /// was added.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_message(
        &self,
        tx: &mut SqliteConnection,
        contact: &str,
        outgoing: bool,
        envelope_id: &[u8],
        (text, file): (&str, Option<&Attachment>),
        sent_ms: i64,
        stored_ms: i64,
        position: i64,
    ) -> Result<bool, ClientError> {
        let id = row::message(envelope_id, contact, outgoing);
        let done = sqlx::query(
            "INSERT OR IGNORE INTO messages (contact, outgoing, envelope_id, sent_ms, stored_ms, sealed, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(contact)
        .bind(outgoing)
        .bind(envelope_id)
        .bind(sent_ms)
        .bind(stored_ms)
        .bind(self.seal("message", &id, &body::encode(text, file)))
        .bind(position)
        .execute(&mut *tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// A pending send: written before anything is encrypted, removed by the fold of its
/// `Sent` record.
pub(crate) struct PendingSend {
    pub(crate) envelope_id: [u8; 16],
    pub(crate) contact: String,
    pub(crate) text: String,
    pub(crate) file: Option<Attachment>,
    /// When it was typed.
    pub(crate) created_ms: i64,
    /// The log holds a `ForwardRequested` for it (`leader`, `primary`).
    pub(crate) requested: bool,
}

/// `messages` or `pending_sends`: outgoing, envelope id, sent, stored, sealed text,
/// the table it is sealed for, whether it is a pending send.
type MessageRow = (
    bool,
    Vec<u8>,
    i64,
    i64,
    Vec<u8>,
    String,
    bool,
    Option<i64>,
    Option<String>,
);

/// A history entry as shown: outgoing, text, sent, stored, pending, how far it got,
/// the file sent with it.
pub(crate) type ShownMessage = (
    bool,
    String,
    i64,
    i64,
    bool,
    Option<Delivery>,
    Option<FileInfo>,
);

impl super::Store {
    /// Keeps `text` to `contact` as a pending send.
    pub(crate) async fn insert_pending_send(
        &self,
        envelope_id: &[u8; 16],
        contact: &str,
        (text, file): (&str, Option<&Attachment>),
        now: i64,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO pending_sends (envelope_id, contact, sealed, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(&envelope_id[..])
        .bind(contact)
        .bind(self.seal(
            "pending_send",
            &row::message(envelope_id, contact, true),
            &body::encode(text, file),
        ))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A `ForwardRequested` folded: this device's own row is marked requested; a
    /// sibling's message becomes a pending send here too (whichever device encrypts
    /// sends it), unless it is in the history already (sent before this request — a
    /// request repeated after its answer was lost — folded).
    pub(crate) async fn forward_requested(
        &self,
        tx: &mut SqliteConnection,
        alias: &str,
        message: &chorus_wire::FirstMessage,
    ) -> Result<(), ClientError> {
        let id = &message.envelope_id;
        sqlx::query(
            "INSERT INTO pending_sends (envelope_id, contact, sealed, created_ms, requested)
             SELECT $1, $2, $3, $4, 1
             WHERE NOT EXISTS (SELECT 1 FROM messages WHERE envelope_id = $1)
             ON CONFLICT (envelope_id) DO UPDATE SET requested = 1",
        )
        .bind(&id[..])
        .bind(alias)
        .bind(self.seal(
            "pending_send",
            &row::message(id, alias, true),
            &body::encode(&message.text, message.file.as_ref()),
        ))
        .bind(i64::try_from(message.sent_ms).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Up to `limit` incoming messages past the fan-out mark, oldest first, opened:
    /// `(messages.id, contact root, message, position)`.
    pub(crate) async fn unfanned(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, [u8; 32], chorus_wire::FirstMessage, u64)>, ClientError> {
        type Row = (i64, String, Vec<u8>, Vec<u8>, i64, Vec<u8>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT m.id, m.contact, c.root_key, m.envelope_id, m.sent_ms, m.sealed, m.position
             FROM messages m JOIN contacts c ON c.name = m.contact
             WHERE m.outgoing = 0 AND m.id > (SELECT fanned_out FROM constellation WHERE id = 1)
             ORDER BY m.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let corrupt = || ClientError::Corrupt("a history message".into());
        rows.into_iter()
            .map(
                |(id, contact, root, envelope_id, sent_ms, sealed, position)| {
                    let opened = self.open_sealed(
                        "message",
                        &row::message(&envelope_id, &contact, false),
                        &sealed,
                    )?;
                    let (text, file) = body::decode(&opened)?;
                    let message = chorus_wire::FirstMessage {
                        envelope_id: <[u8; 16]>::try_from(envelope_id.as_slice())
                            .map_err(|_| corrupt())?,
                        sent_ms: u64::try_from(sent_ms).map_err(|_| corrupt())?,
                        text,
                        file,
                    };
                    let root = <[u8; 32]>::try_from(root.as_slice()).map_err(|_| corrupt())?;
                    Ok((id, root, message, u64::try_from(position).unwrap_or(0)))
                },
            )
            .collect()
    }

    /// Moves the fan-out mark to `id` (`None`: past every message there is).
    pub(crate) async fn fanned_out(&self, id: Option<i64>) -> Result<(), ClientError> {
        sqlx::query(
            "UPDATE constellation SET fanned_out =
                 MAX(fanned_out, COALESCE($1, (SELECT MAX(id) FROM messages), 0))
             WHERE id = 1",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every pending send, oldest first, opened.
    pub(crate) async fn pending_sends(&self) -> Result<Vec<PendingSend>, ClientError> {
        // Envelope id, contact, sealed text, when typed, requested.
        type Row = (Vec<u8>, String, Vec<u8>, i64, bool);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT envelope_id, contact, sealed, created_ms, requested FROM pending_sends
             ORDER BY created_ms, rowid",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, contact, sealed, created_ms, requested)| {
                let envelope_id = <[u8; 16]>::try_from(id.as_slice())
                    .map_err(|_| ClientError::Corrupt("pending send id".into()))?;
                let opened = self.open_sealed(
                    "pending_send",
                    &row::message(&envelope_id, &contact, true),
                    &sealed,
                )?;
                let (text, file) = body::decode(&opened)?;
                Ok(PendingSend {
                    envelope_id,
                    contact,
                    text,
                    file,
                    created_ms,
                    requested,
                })
            })
            .collect()
    }

    /// The last `limit` messages with `contact`, oldest first, opened. One order on
    /// every device: the sender's clock, then direction, then the position in the
    /// mailbox (incoming) or the log (outgoing). Messages still waiting for the log
    /// (relay unreachable) come last.
    /// `device` is this device's id: only its own outbox rows are "sending".
    pub(crate) async fn history(
        &self,
        contact: &str,
        limit: u32,
        device: &[u8],
    ) -> Result<Vec<ShownMessage>, ClientError> {
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT outgoing, envelope_id, sent_ms, stored_ms, sealed, tbl, pending, posting,
                    last_error FROM (
               SELECT * FROM (
                 SELECT m.outgoing, m.envelope_id, m.sent_ms, m.stored_ms, m.sealed,
                        'message' AS tbl, 0 AS pending, m.position,
                        CASE WHEN o.envelope_id IS NOT NULL
                              AND (o.author IS NULL OR o.author = $3) THEN 1 END AS posting,
                        o.last_error
                   FROM messages m LEFT JOIN outbox o ON o.envelope_id = m.envelope_id
                  WHERE m.contact = $1
                 UNION ALL
                 SELECT 1, envelope_id, created_ms, created_ms, sealed, 'pending_send',
                        1, 0, NULL, NULL FROM pending_sends WHERE contact = $1
               ) ORDER BY pending DESC, sent_ms DESC, outgoing DESC, position DESC LIMIT $2
             ) ORDER BY pending ASC, sent_ms ASC, outgoing ASC, position ASC",
        )
        .bind(contact)
        .bind(i64::from(limit))
        .bind(device)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(
                |(
                    outgoing,
                    envelope_id,
                    sent_ms,
                    stored_ms,
                    sealed,
                    table,
                    pending,
                    posting,
                    last_error,
                )| {
                    let opened = self.open_sealed(
                        &table,
                        &row::message(&envelope_id, contact, outgoing),
                        &sealed,
                    )?;
                    let (text, file) = body::decode(&opened)?;
                    let file = file.map(|f| FileInfo::of(&envelope_id, &f));
                    // A sibling's row waits for that sibling (which posts it at
                    // once) before this device tries: as far as we can tell, sent.
                    let delivery = outgoing.then_some(match (pending, posting, last_error) {
                        (true, _, _) => Delivery::Pending,
                        (false, Some(_), Some(reason)) => Delivery::Failed { reason },
                        (false, Some(_), None) => Delivery::Sending,
                        (false, None, _) => Delivery::Sent,
                    });
                    Ok((outgoing, text, sent_ms, stored_ms, pending, delivery, file))
                },
            )
            .collect()
    }
}

/// Whether the history holds `envelope_id` (its send was folded).
pub(crate) async fn has_message(
    tx: &mut SqliteConnection,
    envelope_id: &[u8; 16],
) -> Result<bool, ClientError> {
    let done: Option<i64> = sqlx::query_scalar("SELECT 1 FROM messages WHERE envelope_id = $1")
        .bind(&envelope_id[..])
        .fetch_optional(&mut *tx)
        .await?;
    Ok(done.is_some())
}
