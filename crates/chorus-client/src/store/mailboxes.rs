//! Our mailboxes at relays and how far each was read: the intro mailbox, invitation
//! mailboxes and one per contact. A cursor only moves forward, and moves in the same
//! transaction as what the envelopes it passes changed.

use sqlx::SqliteConnection;

use super::Store;
use crate::ClientError;

/// A mailbox as receiving needs it: its kind (`intro`, `invitation`, `contact`), the
/// contact it belongs to, and the relay seq read up to.
pub(crate) type MailboxRow = (String, Option<String>, i64);

/// A new mailbox of ours (registered at the relay by the caller).
pub(crate) async fn insert_mailbox(
    tx: &mut SqliteConnection,
    mailbox: &[u8],
    kind: &str,
    contact: Option<&str>,
    now: i64,
) -> Result<(), ClientError> {
    sqlx::query(
        "INSERT INTO mailboxes (mailbox_id, kind, contact, created_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(mailbox)
    .bind(kind)
    .bind(contact)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The mailbox `id`, if it is ours.
pub(crate) async fn mailbox(
    tx: &mut SqliteConnection,
    id: &[u8; 32],
) -> Result<Option<MailboxRow>, ClientError> {
    Ok(
        sqlx::query_as("SELECT kind, contact, after_seq FROM mailboxes WHERE mailbox_id = $1")
            .bind(&id[..])
            .fetch_optional(&mut *tx)
            .await?,
    )
}

/// Moves the mailbox's cursor to `after` (never back).
pub(crate) async fn advance_cursor(
    tx: &mut SqliteConnection,
    id: &[u8; 32],
    after: i64,
) -> Result<(), ClientError> {
    sqlx::query("UPDATE mailboxes SET after_seq = $1 WHERE mailbox_id = $2 AND after_seq < $1")
        .bind(after)
        .bind(&id[..])
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Store {
    /// Every mailbox with its cursor, oldest first.
    /// (`contacts`: the contacts' own mailboxes too; under `primary`, only the primary
    /// reads those.)
    pub(crate) async fn cursors(&self, contacts: bool) -> Result<Vec<(Vec<u8>, i64)>, ClientError> {
        Ok(sqlx::query_as(
            "SELECT mailbox_id, after_seq FROM mailboxes WHERE $1 OR kind != 'contact' ORDER BY rowid",
        )
        .bind(contacts)
        .fetch_all(self.pool())
        .await?)
    }

    /// The cursor of mailbox `id`, if it is ours and (unless `contacts`) not one of
    /// the contacts' own (under `primary`, only the primary reads those).
    pub(crate) async fn cursor(
        &self,
        id: &[u8; 32],
        contacts: bool,
    ) -> Result<Option<i64>, ClientError> {
        Ok(sqlx::query_scalar(
            "SELECT after_seq FROM mailboxes WHERE mailbox_id = $1 AND ($2 OR kind != 'contact')",
        )
        .bind(&id[..])
        .bind(contacts)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Every mailbox as `chorus status` shows it, oldest first.
    pub(crate) async fn mailbox_list(&self) -> Result<Vec<MailboxRow>, ClientError> {
        Ok(
            sqlx::query_as("SELECT kind, contact, after_seq FROM mailboxes ORDER BY rowid")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Mailboxes the relay has not yet confirmed: id and kind.
    pub(crate) async fn unregistered_mailboxes(
        &self,
    ) -> Result<Vec<(Vec<u8>, String)>, ClientError> {
        Ok(
            sqlx::query_as("SELECT mailbox_id, kind FROM mailboxes WHERE registered = 0")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// The relay confirmed mailbox `id`.
    pub(crate) async fn mark_registered(&self, id: &[u8]) -> Result<(), ClientError> {
        sqlx::query("UPDATE mailboxes SET registered = 1 WHERE mailbox_id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
