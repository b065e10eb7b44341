//! Message requests as the fold ends them: a request from an identity that became a
//! contact joins the history; a blocked identity's request is dropped.

use sqlx::SqliteConnection;

use super::{Store, row};
use crate::ClientError;

impl Store {
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
        let messages: Vec<(Vec<u8>, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT envelope_id, sent_ms, position, sealed FROM request_messages WHERE request = $1",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        for (envelope_id, sent_ms, position, sealed) in messages {
            let text = self.open_sealed(
                "request_message",
                &row::request_message(&envelope_id, id),
                &sealed,
            )?;
            let text = String::from_utf8_lossy(&text);
            if !text.is_empty() {
                self.insert_message(
                    tx,
                    alias,
                    false,
                    &envelope_id,
                    &text,
                    sent_ms,
                    stored_ms,
                    position,
                )
                .await?;
            }
        }
        delete_request(tx, id).await
    }
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
