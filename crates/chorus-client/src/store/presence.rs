//! When this device last saw each sibling online. The relay keeps presence in memory
//! for 90 seconds and never writes it down; what "last seen" needs beyond that is kept
//! here, on this device only, from the presence it observed (every `watch` heartbeat,
//! every `chorus devices`).

use std::collections::HashMap;

use chorus_relay_api::PresenceOut;

use super::Store;
use crate::ClientError;

impl Store {
    /// Notes the devices the relay heard from (forward only).
    pub(crate) async fn note_seen(&self, devices: &[PresenceOut]) -> Result<(), ClientError> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for d in devices {
            sqlx::query(
                "INSERT INTO device_seen (device_id, seen_ms) VALUES ($1, $2)
                 ON CONFLICT (device_id) DO UPDATE SET seen_ms = excluded.seen_ms
                 WHERE excluded.seen_ms > device_seen.seen_ms",
            )
            .bind(&d.device_id.0[..])
            .bind(d.last_seen_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When this device last saw each device online, by device key.
    pub(crate) async fn last_seen(&self) -> Result<HashMap<Vec<u8>, i64>, ClientError> {
        let rows: Vec<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT device_id, seen_ms FROM device_seen")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().collect())
    }
}
