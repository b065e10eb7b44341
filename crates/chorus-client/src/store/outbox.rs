//! The outbox's rows: envelopes logged as sent but not yet with a relay, and what
//! their last try said. The fold adds and removes rows (`Sent`, `Delivered`); the
//! device posts them and records each failure here.

use super::Store;
use super::contacts::INVITATION_SPENT;
use crate::ClientError;

/// `outbox`: envelope id, relay URL, mailbox, envelope, our claim on it (an invitation's).
pub(crate) type OutboxRow = (Vec<u8>, String, Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// A failing row as `chorus status` shows it: contact, relay URL, attempts, last
/// error, next try.
pub(crate) type FailingRow = (String, String, i64, String, i64);

impl Store {
    /// Rows in the outbox plus mailboxes the relay has not confirmed: zero means a
    /// send has nothing to wait for.
    pub(crate) async fn waiting(&self) -> Result<i64, ClientError> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM outbox)
                  + (SELECT COUNT(*) FROM mailboxes WHERE registered = 0)",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Messages not yet with a relay: outbox rows plus sends not yet logged.
    pub(crate) async fn unsent(&self) -> Result<i64, ClientError> {
        Ok(sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM outbox) + (SELECT COUNT(*) FROM pending_sends)",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Whether `envelope_id` is pending and handed to another device through the log.
    pub(crate) async fn requested(&self, envelope_id: &[u8; 16]) -> Result<bool, ClientError> {
        let row: Option<bool> =
            sqlx::query_scalar("SELECT requested FROM pending_sends WHERE envelope_id = $1")
                .bind(&envelope_id[..])
                .fetch_optional(self.pool())
                .await?;
        Ok(row.unwrap_or(false))
    }

    /// Whether `envelope_id` is still pending or in the outbox.
    pub(crate) async fn queued(&self, envelope_id: &[u8; 16]) -> Result<bool, ClientError> {
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM outbox WHERE envelope_id = $1
             UNION ALL SELECT 1 FROM pending_sends WHERE envelope_id = $1",
        )
        .bind(&envelope_id[..])
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The rows due at `now`, oldest first: this device's (`device`), a sibling's
    /// written at or before `siblings_before`, or an author unknown; those for a
    /// contact's relay only once their wait is over, the home relay's (`home`) always.
    pub(crate) async fn due_outbox(
        &self,
        device: &[u8; 32],
        siblings_before: i64,
        now: i64,
        home: &str,
    ) -> Result<Vec<OutboxRow>, ClientError> {
        Ok(sqlx::query_as(
            "SELECT o.envelope_id, o.relay_url, o.mailbox_id, o.envelope, c.invitation_claim
             FROM outbox o LEFT JOIN contacts c ON c.name = o.contact AND c.invitation = o.mailbox_id
             WHERE (o.author IS NULL OR o.author = $1 OR o.created_ms <= $2)
               AND (o.next_attempt_ms <= $3 OR o.relay_url = $4)
             ORDER BY o.created_ms, o.rowid",
        )
        .bind(&device[..])
        .bind(siblings_before)
        .bind(now)
        .bind(home)
        .fetch_all(self.pool())
        .await?)
    }

    /// The row `envelope_id` failed with `error`; returns its failed tries so far.
    pub(crate) async fn outbox_failed(
        &self,
        envelope_id: &[u8; 16],
        error: &str,
    ) -> Result<i64, ClientError> {
        Ok(sqlx::query_scalar(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2
             WHERE envelope_id = $1 RETURNING attempts",
        )
        .bind(&envelope_id[..])
        .bind(error)
        .fetch_optional(self.pool())
        .await?
        .unwrap_or(0))
    }

    /// The row `envelope_id` is next tried at `at_ms`.
    pub(crate) async fn outbox_retry_at(
        &self,
        envelope_id: &[u8; 16],
        at_ms: i64,
    ) -> Result<(), ClientError> {
        sqlx::query("UPDATE outbox SET next_attempt_ms = $2 WHERE envelope_id = $1")
            .bind(&envelope_id[..])
            .bind(at_ms)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Rows whose last try failed, oldest first.
    pub(crate) async fn failing_outbox(&self) -> Result<Vec<FailingRow>, ClientError> {
        Ok(sqlx::query_as(
            "SELECT contact, relay_url, attempts, last_error, next_attempt_ms FROM outbox
             WHERE last_error IS NOT NULL ORDER BY created_ms, rowid",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// The invitation `envelope_id` was posted to had been used by someone else: the
    /// contact is marked failed, and what was queued for that mailbox is dropped.
    /// False (nothing changed) unless the mailbox is the contact's invitation.
    pub(crate) async fn invitation_spent(
        &self,
        envelope_id: &[u8; 16],
    ) -> Result<bool, ClientError> {
        let mut tx = self.begin().await?;
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT contact, mailbox_id FROM outbox WHERE envelope_id = $1")
                .bind(&envelope_id[..])
                .fetch_optional(&mut *tx)
                .await?;
        let Some((contact, mailbox)) = row else {
            return Ok(false);
        };
        let marked =
            sqlx::query("UPDATE contacts SET failed = $1 WHERE name = $2 AND invitation = $3")
                .bind(INVITATION_SPENT)
                .bind(&contact)
                .bind(&mailbox)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        // Only an invitation's mailbox is single-use: any other relay saying so is
        // wrong, and the rows stay to be retried.
        if marked == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM outbox WHERE contact = $1 AND mailbox_id = $2")
            .bind(&contact)
            .bind(&mailbox)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
