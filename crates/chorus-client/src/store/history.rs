//! History rows written in batches — by the fold (sent messages, received ones a
//! sibling logged, first messages) and by receiving a backlog — with one multi-row
//! `INSERT … RETURNING` per chunk, so the caller learns which were new (and tells the
//! person only of those).

use std::collections::HashSet;

use sqlx::SqliteConnection;

use super::log_state;
use super::row;
use crate::{ClientError, Event};

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
        text: &str,
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
        .bind(self.seal("message", &id, text.as_bytes()))
        .bind(position)
        .execute(&mut *tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
