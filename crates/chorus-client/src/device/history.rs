//! The conversation history for a device being linked (issue 13 item 6).
//!
//! The approving device reads its whole history, cuts it into chunks of about
//! [`Options::history_chunk_bytes`](crate::Options), seals each under a fresh
//! [`HistoryKey`] bound to its blob id, and uploads them; the bundle carries the key and
//! the ids. The new device notes them in its store, then imports chunk by chunk, each in
//! the transaction that forgets it, deleting the blob after: a link interrupted midway
//! resumes at the next chunk on the next `sync`. Entries keep their clocks and positions,
//! so the history shows in the same order as on every other device. A chunk that is gone
//! or does not open is skipped with a warning rather than blocking the rest.

use chorus_crypto::HistoryKey;
use chorus_relay_api::Id32;
use chorus_wire::HistoryChunk;
use chorus_wire::limits::MAX_HISTORY_CHUNKS;

use super::Device;
use crate::ClientError;
use crate::handle::failpoint;

const HISTORY_AD: &[u8] = b"chorus-history-chunk-v1\0";

/// What a chunk is bound to: its blob id.
fn ad(blob: &[u8; 32]) -> Vec<u8> {
    [HISTORY_AD, &blob[..]].concat()
}

impl Device {
    /// Uploads this device's history as sealed chunks; returns the key and the blob ids
    /// in order. Past [`MAX_HISTORY_CHUNKS`] the oldest chunks are left out.
    pub(crate) async fn export_history(&self) -> Result<(HistoryKey, Vec<[u8; 32]>), ClientError> {
        let mut chunks = self
            .store
            .export_history(self.options.history_chunk_bytes)
            .await?;
        if chunks.len() > MAX_HISTORY_CHUNKS {
            tracing::warn!(
                chunks = chunks.len(),
                "the history is larger than a link carries: the oldest part stays behind"
            );
            chunks.drain(..chunks.len() - MAX_HISTORY_CHUNKS);
        }
        let key = HistoryKey::generate(&mut self.rng());
        let mut ids = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let id: [u8; 32] = self.random();
            let sealed = key.seal(&ad(&id), &chunk.encode(), &mut self.rng());
            self.relay.put_blob(Id32(id), sealed).await?;
            ids.push(id);
        }
        Ok((key, ids))
    }

    /// Imports the history chunks still to import (a link's archive, or what an
    /// interrupted one left), telling `progress` (chunks done, chunks in all).
    pub(crate) async fn import_history(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(), ClientError> {
        let total = self.store.history_import_left().await?;
        let mut done = 0;
        while let Some((ord, blob, key)) = self.store.next_history_import().await? {
            let chunk = match self.relay.get_blob(Id32(blob)).await {
                Ok(sealed) => key
                    .open(&ad(&blob), &sealed)
                    .ok()
                    .and_then(|plain| HistoryChunk::decode(&plain).ok()),
                Err(e) if e.code() == Some("not_found") => None,
                Err(e) => return Err(e.into()),
            };
            if chunk.is_none() {
                tracing::warn!(
                    chunk = ord,
                    "a history chunk is gone or does not open; skipped"
                );
            }
            self.store.finish_history_chunk(ord, chunk.as_ref()).await?;
            // Its entries are in the store: the relay need not keep them.
            let _ = self.relay.delete_blob(Id32(blob)).await;
            done += 1;
            progress(done, total.max(done));
            failpoint("link-history-chunk");
        }
        Ok(())
    }
}
