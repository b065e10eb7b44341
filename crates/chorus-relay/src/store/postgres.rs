//! PostgreSQL backend: several stateless relay processes over one database.
//!
//! Appends lock the log row (`SELECT … FOR UPDATE`), so guards and gap-free seqs
//! hold across processes; one-time prekeys are consumed with `FOR UPDATE SKIP
//! LOCKED`, so concurrent fetches take different keys instead of colliding.
//! Devices connected to one process learn about writes made through another by
//! `LISTEN/NOTIFY` on [`CHANNEL`]: each group commit sends one notification
//! carrying the events, tagged with this process's id so it can ignore its own.

use std::collections::{HashMap, HashSet};
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
    PublishPrekeysRequest, RecordIn, RecordOut,
};
use crate::error::{StoreError, StoreResult};
use crate::limits::MAX_RENDEZVOUS_MESSAGES;

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
            // Groups for different logs commit in parallel; one log's groups
            // serialise on its row lock.
            workers: 2,
        })
    }

    /// Sets how many group-commit workers run concurrently (at least one).
    pub fn with_append_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The connection pool (for the benchmark's raw baseline).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> StoreResult<((), sqlx::Transaction<'static, sqlx::Postgres>)> {
        Ok(((), self.pool.begin().await?))
    }

    /// Group commit in a constant number of statements, whatever the group size:
    /// lock every log of the group (in id order, so concurrent groups cannot
    /// deadlock), read their heads, authors and guarded stream versions in one
    /// query each, decide every job in memory (in arrival order), then write all
    /// records, stream versions and heads with one `UNNEST` statement each. Over a
    /// network each statement is a round trip, so this, not the commit, is what
    /// makes large groups cheap.
    async fn append_group_impl(&self, jobs: &[AppendJob]) -> StoreResult<Vec<AppendOutcome>> {
        let mut tx = self.pool.begin().await?;
        let mut log_ids: Vec<Vec<u8>> = jobs.iter().map(|j| j.log_id.0.to_vec()).collect();
        log_ids.sort();
        log_ids.dedup();
        let rows = sqlx::query(
            "SELECT log_id, head_seq FROM logs WHERE log_id = ANY($1) ORDER BY log_id FOR UPDATE",
        )
        .bind(&log_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut heads: HashMap<Id32, i64> = HashMap::new();
        for r in rows {
            heads.insert(id32(r.try_get(0)?)?, r.try_get(1)?);
        }

        let (mut q_logs, mut q_devs) = (Vec::new(), Vec::new());
        for j in jobs {
            q_logs.push(j.log_id.0.to_vec());
            q_devs.push(j.author.0.to_vec());
        }
        let rows = sqlx::query(
            "SELECT d.log_id, d.device_id FROM devices d \
             JOIN UNNEST($1::bytea[], $2::bytea[]) AS q(l, a) ON d.log_id = q.l AND d.device_id = q.a \
             WHERE d.revoked_ms IS NULL",
        )
        .bind(&q_logs)
        .bind(&q_devs)
        .fetch_all(&mut *tx)
        .await?;
        let mut current: HashSet<(Id32, Id32)> = HashSet::new();
        for r in rows {
            current.insert((id32(r.try_get(0)?)?, id32(r.try_get(1)?)?));
        }

        let (mut g_logs, mut g_tags) = (Vec::new(), Vec::new());
        for j in jobs {
            for g in j.records.iter().filter_map(|r| r.guard.as_ref()) {
                g_logs.push(j.log_id.0.to_vec());
                g_tags.push(g.stream_tag.0.clone());
            }
        }
        let mut versions: HashMap<(Id32, Vec<u8>), i64> = HashMap::new();
        if !g_logs.is_empty() {
            let rows = sqlx::query(
                "SELECT s.log_id, s.stream_tag, s.version FROM streams s \
                 JOIN UNNEST($1::bytea[], $2::bytea[]) AS q(l, t) ON s.log_id = q.l AND s.stream_tag = q.t",
            )
            .bind(&g_logs)
            .bind(&g_tags)
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                versions.insert((id32(r.try_get(0)?)?, r.try_get(1)?), r.try_get(2)?);
            }
        }

        // Decide each job against the state left by the jobs before it.
        let mut out = Vec::with_capacity(jobs.len());
        let mut rec = RecordColumns::default();
        let mut touched_streams: HashMap<(Id32, Vec<u8>), i64> = HashMap::new();
        let mut touched_logs: HashMap<Id32, i64> = HashMap::new();
        for job in jobs {
            let Some(head) = heads.get(&job.log_id).copied() else {
                out.push(Err(AppendRejection::NoLog));
                continue;
            };
            if !current.contains(&(job.log_id, job.author)) {
                out.push(Err(AppendRejection::NotCurrent));
                continue;
            }
            let mut local: Vec<(Vec<u8>, i64)> = Vec::new();
            let mut failed = Vec::new();
            for (index, r) in job.records.iter().enumerate() {
                let Some(g) = &r.guard else { continue };
                let tag = &g.stream_tag.0;
                let now_at = match local.iter().find(|(t, _)| t == tag) {
                    Some((_, v)) => *v,
                    None => versions
                        .get(&(job.log_id, tag.clone()))
                        .copied()
                        .unwrap_or(0),
                };
                let next = if now_at == g.expected_version {
                    now_at + 1
                } else {
                    failed.push(FailedGuard {
                        index,
                        stream_tag: g.stream_tag.clone(),
                        expected_version: g.expected_version,
                        current_version: now_at,
                    });
                    now_at
                };
                match local.iter_mut().find(|(t, _)| t == tag) {
                    Some(slot) => slot.1 = next,
                    None => local.push((tag.clone(), next)),
                }
            }
            if !failed.is_empty() {
                out.push(Err(AppendRejection::Guards(failed)));
                continue;
            }
            let mut seqs = Vec::with_capacity(job.records.len());
            for (i, r) in job.records.iter().enumerate() {
                let seq = head + int(i) + 1;
                rec.push(job, seq, r);
                seqs.push(seq);
            }
            let new_head = head + int(job.records.len());
            heads.insert(job.log_id, new_head);
            touched_logs.insert(job.log_id, new_head);
            for (tag, v) in local {
                versions.insert((job.log_id, tag.clone()), v);
                touched_streams.insert((job.log_id, tag), v);
            }
            out.push(Ok(seqs));
        }

        if !rec.seq.is_empty() {
            sqlx::query(
                "INSERT INTO records (log_id, seq, epoch, author, nonce, ciphertext, stream_tag, expected_version) \
                 SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::int8[], $4::bytea[], $5::bytea[], $6::bytea[], \
                 $7::bytea[], $8::int8[])",
            )
            .bind(&rec.log_id)
            .bind(&rec.seq)
            .bind(&rec.epoch)
            .bind(&rec.author)
            .bind(&rec.nonce)
            .bind(&rec.ciphertext)
            .bind(&rec.stream_tag)
            .bind(&rec.expected)
            .execute(&mut *tx)
            .await?;
        }
        if !touched_streams.is_empty() {
            let (mut l, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for ((log, tag), version) in touched_streams {
                l.push(log.0.to_vec());
                t.push(tag);
                v.push(version);
            }
            sqlx::query(
                "INSERT INTO streams (log_id, stream_tag, version) \
                 SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::int8[]) \
                 ON CONFLICT (log_id, stream_tag) DO UPDATE SET version = excluded.version",
            )
            .bind(&l)
            .bind(&t)
            .bind(&v)
            .execute(&mut *tx)
            .await?;
        }
        let heads_moved: Vec<(Id32, i64)> = touched_logs.iter().map(|(l, h)| (*l, *h)).collect();
        if !touched_logs.is_empty() {
            let (mut l, mut h) = (Vec::new(), Vec::new());
            for (log, head) in touched_logs {
                l.push(log.0.to_vec());
                h.push(head);
            }
            sqlx::query(
                "UPDATE logs SET head_seq = u.h FROM UNNEST($1::bytea[], $2::int8[]) AS u(l, h) \
                 WHERE logs.log_id = u.l",
            )
            .bind(&l)
            .bind(&h)
            .execute(&mut *tx)
            .await?;
        }
        // Wake other relay processes; delivered only if this commits.
        let events: Vec<Event> = heads_moved
            .into_iter()
            .map(|(log_id, head_seq)| Event::LogAppended { log_id, head_seq })
            .collect();
        if !events.is_empty() {
            for payload in self.notice_payloads(&events)? {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn publish_events(&self, events: &[Event]) -> StoreResult<()> {
        for payload in self.notice_payloads(events)? {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Events as notification payloads, each under PostgreSQL's size cap.
    fn notice_payloads(&self, events: &[Event]) -> StoreResult<Vec<String>> {
        let encode = |events: Vec<Event>| {
            serde_json::to_string(&Notice {
                from: self.instance,
                events,
            })
            .map_err(|e| StoreError::Internal(sqlx::Error::Protocol(e.to_string())))
        };
        let mut out = Vec::new();
        let mut chunk: Vec<Event> = Vec::new();
        let mut size = 0;
        for e in events {
            let len = serde_json::to_vec(e).map(|v| v.len()).unwrap_or(0);
            if size + len > MAX_NOTIFY_PAYLOAD && !chunk.is_empty() {
                out.push(encode(std::mem::take(&mut chunk))?);
                size = 0;
            }
            size += len + 1;
            chunk.push(e.clone());
        }
        if !chunk.is_empty() {
            out.push(encode(chunk)?);
        }
        Ok(out)
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

/// Records of a group, column by column, for one `UNNEST` insert.
#[derive(Default)]
struct RecordColumns {
    log_id: Vec<Vec<u8>>,
    seq: Vec<i64>,
    epoch: Vec<i64>,
    author: Vec<Vec<u8>>,
    nonce: Vec<Vec<u8>>,
    ciphertext: Vec<Vec<u8>>,
    stream_tag: Vec<Option<Vec<u8>>>,
    expected: Vec<Option<i64>>,
}

impl RecordColumns {
    fn push(&mut self, job: &AppendJob, seq: i64, r: &RecordIn) {
        self.log_id.push(job.log_id.0.to_vec());
        self.seq.push(seq);
        self.epoch.push(r.epoch);
        self.author.push(job.author.0.to_vec());
        self.nonce.push(r.nonce.0.clone());
        self.ciphertext.push(r.ciphertext.0.clone());
        self.stream_tag
            .push(r.guard.as_ref().map(|g| g.stream_tag.0.clone()));
        self.expected
            .push(r.guard.as_ref().map(|g| g.expected_version));
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
