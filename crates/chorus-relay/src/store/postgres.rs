//! PostgreSQL backend: several stateless relay processes over one database.
//!
//! Appends lock the log row (`SELECT … FOR UPDATE`), so guards and gap-free seqs
//! hold across processes; one-time prekeys are consumed with `FOR UPDATE SKIP
//! LOCKED`, so concurrent fetches take different keys instead of colliding.
//! Devices connected to one process learn about writes made through another by
//! `LISTEN/NOTIFY` on [`CHANNEL`]: each group commit sends one notification
//! carrying the events, tagged with this process's id so it can ignore its own.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::broadcast;

use super::sql::{id16, id32, int, sql_store};
use super::{
    AppendJob, AppendOutcome, AppendRejection, DeviceAdded, DeviceRow, Event, LogInfo, Posted,
    RecordPage, Swept,
};
use crate::api::{
    EnvelopeOut, FailedGuard, Guard, HexBytes, Id16, Id32, PrekeyBundle, PrekeyCount,
    PublishPrekeysRequest, RecordOut,
};
use crate::error::{StoreError, StoreResult};
use crate::limits::{MAX_MAILBOXES_PER_LOG, MAX_RENDEZVOUS_MESSAGES};

/// The NOTIFY channel relay processes share.
pub const CHANNEL: &str = "chorus_relay_events";

/// PostgreSQL caps a NOTIFY payload at 8000 bytes; events are split below that.
const MAX_NOTIFY_PAYLOAD: usize = 7000;

/// How long to wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A notification on [`CHANNEL`].
#[derive(Serialize, Deserialize)]
struct Notice {
    /// The sending process's instance id.
    from: u64,
    events: Vec<Event>,
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: sqlx::PgPool,
    /// Random per process, to recognise our own notifications.
    instance: u64,
    workers: usize,
}

impl PostgresStore {
    /// Connects to `url` with up to `connections` pooled connections and migrates.
    pub async fn connect(url: &str, connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        // Two processes starting at once both try to migrate; the loser's
        // error is harmless if the schema ends up complete, so retry once.
        let migrator = sqlx::migrate!("migrations/postgres");
        if migrator.run(&pool).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            migrator
                .run(&pool)
                .await
                .map_err(|e| StoreError::Internal(e.into()))?;
        }
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed)
            .map_err(|_| StoreError::Internal(sqlx::Error::Protocol("no OS randomness".into())))?;
        Ok(PostgresStore {
            pool,
            instance: u64::from_le_bytes(seed),
            workers: 2,
        })
    }

    /// The connection pool (for the benchmark's raw baseline).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> StoreResult<((), sqlx::Transaction<'static, sqlx::Postgres>)> {
        Ok(((), self.pool.begin().await?))
    }

    async fn publish_events(&self, events: &[Event]) -> StoreResult<()> {
        let mut chunk: Vec<Event> = Vec::new();
        let mut size = 0;
        for e in events {
            let len = serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0);
            if size + len > MAX_NOTIFY_PAYLOAD && !chunk.is_empty() {
                self.notify(std::mem::take(&mut chunk)).await?;
                size = 0;
            }
            size += len + 1;
            chunk.push(e.clone());
        }
        if !chunk.is_empty() {
            self.notify(chunk).await?;
        }
        Ok(())
    }

    async fn notify(&self, events: Vec<Event>) -> StoreResult<()> {
        let payload = serde_json::to_string(&Notice {
            from: self.instance,
            events,
        })
        .map_err(|e| StoreError::Internal(sqlx::Error::Protocol(e.to_string())))?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn listen_events(&self, bus: broadcast::Sender<Event>) -> StoreResult<()> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        let me = self.instance;
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => match serde_json::from_str::<Notice>(n.payload()) {
                        Ok(notice) if notice.from != me => {
                            for e in notice.events {
                                let _ = bus.send(e);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "ignoring malformed notification"),
                    },
                    // The connection dropped and was re-established: anything
                    // sent meanwhile is lost, so every socket re-reads.
                    Ok(None) => {
                        let _ = bus.send(Event::Resync);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "notification listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let _ = bus.send(Event::Resync);
                    }
                }
            }
        });
        Ok(())
    }
}

sql_store!(
    PostgresStore,
    sqlx::Postgres,
    backend = "postgres",
    lock = " FOR UPDATE",
    consume_prekey = "DELETE FROM one_time_prekeys WHERE id = \
        (SELECT id FROM one_time_prekeys WHERE address = $1 AND kind = $2 ORDER BY id LIMIT 1 \
        FOR UPDATE SKIP LOCKED) RETURNING prekey"
);
