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
    AppendJob, AppendOutcome, AppendRejection, BundleOutcome, DeviceAdded, DevicePost, DeviceRow,
    EnvelopePost, Event, FilePart, LogInfo, Login, LoginCaps, LoginTable, MailboxPolicy, Posted,
    RecordPage, StoredPart, Swept,
};
use crate::api::{
    EnvelopeOut, FailedGuard, Guard, HexBytes, Id32, PrekeyBundle, PrekeyCount,
    PublishPrekeysRequest, RecordOut, RecoverySlot,
};
use crate::error::{StoreError, StoreResult};
use crate::limits::MAX_RENDEZVOUS_MESSAGES;

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads go through a memory map of up to this much of the file (SQLite's
/// `mmap_size`, a bound, not an allocation): a page of records is then copied out of
/// the page cache once, not fetched with a `pread` per database page — a third of the
/// CPU of a catch-up was the relay's readers in those calls (docs/benchmarks.md).
const MMAP_BYTES: &str = "268435456";

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
            .pragma("mmap_size", MMAP_BYTES)
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
            .pragma("mmap_size", MMAP_BYTES)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        Self::with_options(options, readers).await
    }

    async fn with_options(options: SqliteConnectOptions, readers: u32) -> StoreResult<Self> {
        // No idle reaping or connection lifetime: sqlx 0.9.0's maintenance task can
        // read its idle count mid-update, wrap it and spin a runtime worker forever
        // (seen hanging a client at 100% CPU). Without both timeouts it never starts.
        let pool = SqlitePoolOptions::new()
            .max_connections(readers.max(2))
            .idle_timeout(None)
            .max_lifetime(None)
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

    /// Sets how many group-commit workers run concurrently (at least one).
    pub fn with_append_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
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

    /// Group commit, one job at a time inside one transaction: SQLite statements
    /// are in-process calls costing microseconds, so only the commit (fsync) is
    /// worth amortising.
    async fn append_group_impl(&self, jobs: &[AppendJob]) -> StoreResult<Vec<AppendOutcome>> {
        let mut out = Vec::with_capacity(jobs.len());
        let (_guard, mut tx) = self.begin_write().await?;
        for job in jobs {
            out.push(append_one(&mut tx, job).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The bundled send: the append and the post in one transaction. Dropping the
    /// transaction on any refusal rolls both back.
    async fn append_bundle_impl(
        &self,
        job: &AppendJob,
        post: &EnvelopePost,
    ) -> StoreResult<BundleOutcome> {
        let (_guard, mut tx) = self.begin_write().await?;
        let seqs = match append_one(&mut tx, job).await? {
            Ok(seqs) => seqs,
            Err(refused) => return Ok(Err(refused)),
        };
        let posted = post_in(&mut tx, post).await?;
        tx.commit().await?;
        Ok(Ok((seqs, posted)))
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

/// One append job inside the group transaction.
async fn append_one(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    job: &AppendJob,
) -> StoreResult<AppendOutcome> {
    let log: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT head_seq, first_seq, epoch FROM logs WHERE log_id = $1")
            .bind(&job.log_id.0[..])
            .fetch_optional(&mut **tx)
            .await?;
    let Some((head, first_seq, epoch)) = log else {
        return Ok(Err(AppendRejection::NoLog));
    };
    let author: Option<Option<i64>> =
        sqlx::query_scalar("SELECT revoked_ms FROM devices WHERE log_id = $1 AND device_id = $2")
            .bind(&job.log_id.0[..])
            .bind(&job.author.0[..])
            .fetch_optional(&mut **tx)
            .await?;
    if author != Some(None) {
        return Ok(Err(AppendRejection::NotCurrent));
    }
    // Before the guards: a device behind a rotation must read the log anyway.
    let epoch = match job.epoch_after(epoch) {
        Ok(epoch) => epoch,
        Err(stale) => return Ok(Err(stale)),
    };
    // Versions as this job moves them, so a batch may guard one stream
    // several times (expecting v, then v + 1, ...).
    let mut versions: Vec<(&[u8], i64)> = Vec::new();
    let mut failed = Vec::new();
    for (index, rec) in job.records.iter().enumerate() {
        let Some(g) = &rec.guard else { continue };
        let tag = g.stream_tag.0.as_slice();
        let current = match versions.iter().find(|(t, _)| *t == tag) {
            Some((_, v)) => *v,
            None => sqlx::query_scalar(
                "SELECT version FROM streams WHERE log_id = $1 AND stream_tag = $2",
            )
            .bind(&job.log_id.0[..])
            .bind(tag)
            .fetch_optional(&mut **tx)
            .await?
            .unwrap_or(0),
        };
        let next = if current == g.expected_version {
            current + 1
        } else {
            failed.push(FailedGuard {
                index,
                stream_tag: g.stream_tag.clone(),
                expected_version: g.expected_version,
                current_version: current,
            });
            current
        };
        match versions.iter_mut().find(|(t, _)| *t == tag) {
            Some(slot) => slot.1 = next,
            None => versions.push((tag, next)),
        }
    }
    if !failed.is_empty() {
        return Ok(Err(AppendRejection::Guards(failed)));
    }
    if !job.fits(head, first_seq) {
        return Ok(Err(AppendRejection::Quota));
    }
    let mut seqs = Vec::with_capacity(job.records.len());
    for (i, rec) in job.records.iter().enumerate() {
        let seq = head + int(i) + 1;
        sqlx::query(
            "INSERT INTO records (log_id, seq, epoch, author, nonce, ciphertext, stream_tag, expected_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&job.log_id.0[..])
        .bind(seq)
        .bind(rec.epoch)
        .bind(&job.author.0[..])
        .bind(rec.nonce.0.as_slice())
        .bind(rec.ciphertext.0.as_slice())
        .bind(rec.guard.as_ref().map(|g| g.stream_tag.0.as_slice()))
        .bind(rec.guard.as_ref().map(|g| g.expected_version))
        .execute(&mut **tx)
        .await?;
        seqs.push(seq);
    }
    for (tag, version) in versions {
        sqlx::query(
            "INSERT INTO streams (log_id, stream_tag, version) VALUES ($1, $2, $3) \
             ON CONFLICT (log_id, stream_tag) DO UPDATE SET version = excluded.version",
        )
        .bind(&job.log_id.0[..])
        .bind(tag)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("UPDATE logs SET head_seq = $2, epoch = $3 WHERE log_id = $1")
        .bind(&job.log_id.0[..])
        .bind(head + int(job.records.len()))
        .bind(epoch)
        .execute(&mut **tx)
        .await?;
    Ok(Ok(seqs))
}
