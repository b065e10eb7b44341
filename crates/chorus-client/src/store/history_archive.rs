//! History archives (issue 13 item 6): this device's history read out in chunks for a
//! device being linked, and, on the new device, the chunks still to import.
//!
//! Sealing the chunks and carrying them is the link's business (`device/history.rs`);
//! only this file maps them to and from the `messages` and `history_import` tables.

use chorus_crypto::HistoryKey;
use chorus_wire::{HistoryChunk, HistoryItem};

use super::history::{HistoryRow, insert_history};
use super::{Store, body, row};
use crate::ClientError;

/// `messages`: contact, outgoing, envelope id, sent, stored, position, sealed text.
type MessageRow = (String, bool, Vec<u8>, i64, i64, i64, Vec<u8>);

impl Store {
    /// The whole history, oldest first, in chunks of about `target` encoded bytes.
    pub(crate) async fn export_history(
        &self,
        target: usize,
    ) -> Result<Vec<HistoryChunk>, ClientError> {
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT contact, outgoing, envelope_id, sent_ms, stored_ms, position, sealed
             FROM messages ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut chunks = Vec::new();
        let (mut chunk, mut size) = (HistoryChunk::default(), 0);
        for (contact, outgoing, envelope_id, sent_ms, stored_ms, position, sealed) in rows {
            let opened = self.open_sealed(
                "message",
                &row::message(&envelope_id, &contact, outgoing),
                &sealed,
            )?;
            let (text, file) = body::decode(&opened)?;
            let item = HistoryItem {
                envelope_id: <[u8; 16]>::try_from(envelope_id.as_slice())
                    .map_err(|_| ClientError::Corrupt("message envelope id".into()))?,
                text,
                file,
                contact,
                outgoing,
                sent_ms,
                stored_ms,
                position,
            };
            let len = item.encoded_len();
            if size + len > target && !chunk.items.is_empty() {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += len;
            chunk.items.push(item);
        }
        if !chunk.items.is_empty() {
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// Notes an archive to import: its key and its chunks' blob ids, in order.
    pub(crate) async fn put_history_import(
        &self,
        key: &HistoryKey,
        blobs: &[[u8; 32]],
    ) -> Result<(), ClientError> {
        let mut tx = self.begin().await?;
        for (ord, blob) in blobs.iter().enumerate() {
            let ord = i64::try_from(ord).unwrap_or(i64::MAX);
            sqlx::query("INSERT INTO history_import (ord, blob, sealed) VALUES ($1, $2, $3)")
                .bind(ord)
                .bind(&blob[..])
                .bind(self.seal("history_import", &ord.to_string(), &key.to_bytes()[..]))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many chunks are still to import.
    pub(crate) async fn history_import_left(&self) -> Result<u64, ClientError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM history_import")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The next chunk to import: its place, its blob id and the archive key.
    pub(crate) async fn next_history_import(
        &self,
    ) -> Result<Option<(i64, [u8; 32], HistoryKey)>, ClientError> {
        let row: Option<(i64, Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT ord, blob, sealed FROM history_import ORDER BY ord LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        let Some((ord, blob, sealed)) = row else {
            return Ok(None);
        };
        let corrupt = || ClientError::Corrupt("history import".into());
        let key = self.open_sealed("history_import", &ord.to_string(), &sealed)?;
        let key = <[u8; 32]>::try_from(&key[..]).map_err(|_| corrupt())?;
        let blob = <[u8; 32]>::try_from(blob.as_slice()).map_err(|_| corrupt())?;
        Ok(Some((ord, blob, HistoryKey::from_bytes(&key))))
    }

    /// Imports one chunk (entries this device has already are kept as they are) and
    /// forgets it, in one transaction; `None` forgets a chunk that cannot be had.
    pub(crate) async fn finish_history_chunk(
        &self,
        ord: i64,
        chunk: Option<&HistoryChunk>,
    ) -> Result<(), ClientError> {
        let mut tx = self.begin().await?;
        if let Some(chunk) = chunk {
            let rows: Vec<HistoryRow> = chunk
                .items
                .iter()
                .map(|i| HistoryRow {
                    sealed: self.seal(
                        "message",
                        &row::message(&i.envelope_id, &i.contact, i.outgoing),
                        &body::encode(&i.text, i.file.as_ref()),
                    ),
                    alias: i.contact.clone(),
                    outgoing: i.outgoing,
                    envelope_id: i.envelope_id,
                    sent_ms: i.sent_ms,
                    stored_ms: i.stored_ms,
                    position: i.position,
                    event: None,
                })
                .collect();
            insert_history(&mut tx, &rows).await?;
        }
        sqlx::query("DELETE FROM history_import WHERE ord = $1")
            .bind(ord)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
