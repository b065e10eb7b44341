//! SQLite backend: the embedded default (`chorus-relay serve` with no flags).
//!
//! One file in WAL mode with `synchronous = FULL`, so an acknowledged append
//! survives a `kill -9` and a power cut. SQLite has one writer at a time; the store
//! serialises its writers with an async mutex (and `BEGIN IMMEDIATE`) instead of
//! letting them spin on `SQLITE_BUSY`, and readers run concurrently from the pool.
//! Group commit (one append worker, many requests per transaction) amortises the
//! fsync per commit that dominates SQLite write latency.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{Mutex, MutexGuard, broadcast};

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

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite store.
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    /// SQLite admits one writer; queueing here is fairer and cheaper than
    /// retrying on `SQLITE_BUSY`.
    write_lock: Mutex<()>,
    workers: usize,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and migrates it.
    /// `readers` is the pool size.
    pub async fn open(path: &Path, readers: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        Self::with_options(options, readers).await
    }

    /// Opens a database from a `sqlite:` URL.
    pub async fn open_url(url: &str, readers: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        Self::with_options(options, readers).await
    }

    async fn with_options(options: SqliteConnectOptions, readers: u32) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(readers.max(2))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Internal(e.into()))?;
        Ok(SqliteStore {
            pool,
            write_lock: Mutex::new(()),
            workers: 1,
        })
    }

    /// The connection pool (for the benchmark's raw baseline).
    pub fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }

    async fn begin_write(
        &self,
    ) -> StoreResult<(MutexGuard<'_, ()>, sqlx::Transaction<'static, sqlx::Sqlite>)> {
        let guard = self.write_lock.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((guard, tx))
    }

    async fn publish_events(&self, _events: &[Event]) -> StoreResult<()> {
        Ok(())
    }

    async fn listen_events(&self, _bus: broadcast::Sender<Event>) -> StoreResult<()> {
        Ok(())
    }
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    backend = "sqlite",
    lock = "",
    consume_prekey = "DELETE FROM one_time_prekeys WHERE id = \
        (SELECT id FROM one_time_prekeys WHERE address = $1 AND kind = $2 ORDER BY id LIMIT 1) \
        RETURNING prekey"
);
