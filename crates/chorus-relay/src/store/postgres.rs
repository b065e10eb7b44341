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
    AppendJob, AppendOutcome, AppendRejection, BundleOutcome, DeviceAdded, DevicePost, DeviceRow,
    EnvelopePost, Event, FilePart, LogInfo, Login, LoginCaps, LoginTable, MailboxPolicy, Posted,
    RecordPage, StoredPart, Swept,
};
use crate::api::{
    EnvelopeOut, FailedGuard, Guard, HexBytes, Id32, PrekeyBundle, PrekeyCount,
    PublishPrekeysRequest, RecordIn, RecordOut, RecoverySlot,
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
    /// Optimistic group-commit rounds before taking row locks.
    optimistic_attempts: usize,
}

impl PostgresStore {
    /// Connects to `url` with up to `connections` pooled connections and migrates.
    pub async fn connect(url: &str, connections: u32) -> StoreResult<Self> {
        // No idle reaping or lifetime: see `SqliteStore::open` (sqlx 0.9.0's pool
        // maintenance task can spin forever).
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(2))
            .idle_timeout(None)
            .max_lifetime(None)
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
            optimistic_attempts: OPTIMISTIC_ATTEMPTS,
        })
    }

    /// Sets how many group-commit workers run concurrently (at least one).
    pub fn with_append_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Sets the optimistic group-commit rounds before row locks (0: always lock).
    pub fn with_optimistic_attempts(mut self, attempts: usize) -> Self {
        self.optimistic_attempts = attempts;
        self
    }

    /// The connection pool (for the benchmark's raw baseline).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> StoreResult<((), sqlx::Transaction<'static, sqlx::Postgres>)> {
        Ok(((), self.pool.begin().await?))
    }

    /// Group commit in two round trips and no explicit transaction, whatever
    /// the group size. Over a network every statement is a round trip, and a
    /// `BEGIN … COMMIT` around a lock adds two more, so instead the group is
    /// applied optimistically: one query reads the heads, epochs, authors and
    /// guarded stream versions of every log in the group; every job is decided in
    /// memory (in arrival order); one statement then writes all records, stream
    /// versions, heads and epochs, conditional per log on its head being unchanged,
    /// and sends the `NOTIFY` — atomically, as one implicit transaction. A log whose
    /// head moved meanwhile (another worker or relay process appended) is not
    /// written, and its jobs are decided again from a fresh read. Streams and the
    /// epoch only move with the head, so an unchanged head proves every guard and
    /// epoch decision for that log. After [`OPTIMISTIC_ATTEMPTS`] the remaining jobs
    /// take the row-locking path.
    async fn append_group_impl(&self, jobs: &[AppendJob]) -> StoreResult<Vec<AppendOutcome>> {
        let mut out: Vec<Option<AppendOutcome>> = vec![None; jobs.len()];
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        for _ in 0..self.optimistic_attempts {
            let group: Vec<&AppendJob> = pending.iter().filter_map(|&i| jobs.get(i)).collect();
            let snap = snapshot(&self.pool, &group).await?;
            let plan = plan(&group, snap);
            let confirmed = self.write(&self.pool, &plan).await?;
            let mut retry = Vec::new();
            for (k, &i) in pending.iter().enumerate() {
                let Some(job) = jobs.get(i) else { continue };
                if plan.logs.contains_key(&job.log_id) && !confirmed.contains(&job.log_id) {
                    retry.push(i);
                } else if let (Some(slot), Some(o)) = (out.get_mut(i), plan.out.get(k)) {
                    *slot = Some(o.clone());
                }
            }
            pending = retry;
            if pending.is_empty() {
                break;
            }
        }
        if !pending.is_empty() {
            let group: Vec<&AppendJob> = pending.iter().filter_map(|&i| jobs.get(i)).collect();
            let decided = self.append_locked(&group).await?;
            for (&i, o) in pending.iter().zip(decided) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(o);
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Err(AppendRejection::NoLog)))
            .collect())
    }

    /// The contended path: lock the group's logs (in id order, so concurrent
    /// groups cannot deadlock), then read, decide and write under the locks.
    async fn append_locked(&self, group: &[&AppendJob]) -> StoreResult<Vec<AppendOutcome>> {
        let mut tx = self.pool.begin().await?;
        let mut log_ids: Vec<Vec<u8>> = group.iter().map(|j| j.log_id.0.to_vec()).collect();
        log_ids.sort();
        log_ids.dedup();
        sqlx::query("SELECT log_id FROM logs WHERE log_id = ANY($1) ORDER BY log_id FOR UPDATE")
            .bind(&log_ids)
            .execute(&mut *tx)
            .await?;
        let snap = snapshot(&mut *tx, group).await?;
        let plan = plan(group, snap);
        self.write(&mut *tx, &plan).await?;
        tx.commit().await?;
        Ok(plan.out)
    }

    /// The bundled send, on the contended path's locks: the append and the post
    /// in one transaction. Dropping the transaction on any refusal rolls both back.
    async fn append_bundle_impl(
        &self,
        job: &AppendJob,
        post: &EnvelopePost,
    ) -> StoreResult<BundleOutcome> {
        let mut tx = self.pool.begin().await?;
        // Both logs, in id order: the author's (appended to) and the mailbox owner's
        // (whose envelope bytes the post changes); see `post_in` for the lock order.
        let owner: Vec<u8> =
            sqlx::query_scalar("SELECT log_id FROM mailboxes WHERE mailbox_id = $1")
                .bind(&post.mailbox_id.0[..])
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
        sqlx::query("SELECT log_id FROM logs WHERE log_id = ANY($1) ORDER BY log_id FOR UPDATE")
            .bind(vec![job.log_id.0.to_vec(), owner])
            .execute(&mut *tx)
            .await?;
        let group = [job];
        let snap = snapshot(&mut *tx, &group).await?;
        let plan = plan(&group, snap);
        let outcome = plan
            .out
            .first()
            .cloned()
            .unwrap_or(Err(AppendRejection::NoLog));
        let seqs = match outcome {
            Ok(seqs) => seqs,
            Err(refused) => return Ok(Err(refused)),
        };
        self.write(&mut *tx, &plan).await?;
        let posted = post_in(&mut tx, post).await?;
        tx.commit().await?;
        Ok(Ok((seqs, posted)))
    }

    /// Writes a plan; returns the logs whose head was still as read (only those
    /// were written).
    async fn write<'e, E: sqlx::PgExecutor<'e>>(
        &self,
        ex: E,
        plan: &Plan,
    ) -> StoreResult<HashSet<Id32>> {
        if plan.logs.is_empty() {
            return Ok(HashSet::new());
        }
        let (mut l, mut old, mut new, mut epoch) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut events = Vec::new();
        for (log, m) in &plan.logs {
            l.push(log.0.to_vec());
            old.push(m.read);
            new.push(m.head);
            epoch.push(m.epoch);
            if m.head > m.read {
                events.push(Event::LogAppended {
                    log_id: *log,
                    head_seq: m.head,
                });
            }
        }
        let (mut sl, mut st, mut sv) = (Vec::new(), Vec::new(), Vec::new());
        for ((log, tag), version) in &plan.streams {
            sl.push(log.0.to_vec());
            st.push(tag.clone());
            sv.push(*version);
        }
        // One payload is enough here: a group's events are a few dozen bytes
        // per log and a group holds at most MAX_GROUP_COMMIT jobs.
        let payload = self
            .notice_payloads(&events)?
            .into_iter()
            .next()
            .unwrap_or_default();
        let rec = &plan.rec;
        let rows = sqlx::query(
            "WITH lg AS ( \
               UPDATE logs SET head_seq = u.new, epoch = u.epoch \
               FROM UNNEST($1::bytea[], $2::int8[], $3::int8[], $4::int8[]) AS u(l, old, new, epoch) \
               WHERE logs.log_id = u.l AND logs.head_seq = u.old RETURNING logs.log_id \
             ), ins AS ( \
               INSERT INTO records (log_id, seq, epoch, author, nonce, ciphertext, stream_tag, expected_version) \
               SELECT r.* FROM UNNEST($5::bytea[], $6::int8[], $7::int8[], $8::bytea[], $9::bytea[], $10::bytea[], \
                 $11::bytea[], $12::int8[]) AS r(log_id, seq, epoch, author, nonce, ciphertext, stream_tag, expected_version) \
               WHERE r.log_id IN (SELECT log_id FROM lg) \
             ), st AS ( \
               INSERT INTO streams (log_id, stream_tag, version) \
               SELECT s.l, s.t, s.v FROM UNNEST($13::bytea[], $14::bytea[], $15::int8[]) AS s(l, t, v) \
               WHERE s.l IN (SELECT log_id FROM lg) \
               ON CONFLICT (log_id, stream_tag) DO UPDATE SET version = excluded.version \
             ) \
             SELECT lg.log_id FROM lg CROSS JOIN ( \
               SELECT count(pg_notify($16, $17)) FROM (SELECT 1) AS one \
               WHERE $17 <> '' AND EXISTS (SELECT 1 FROM lg) \
             ) AS n",
        )
        .bind(&l)
        .bind(&old)
        .bind(&new)
        .bind(&epoch)
        .bind(&rec.log_id)
        .bind(&rec.seq)
        .bind(&rec.epoch)
        .bind(&rec.author)
        .bind(&rec.nonce)
        .bind(&rec.ciphertext)
        .bind(&rec.stream_tag)
        .bind(&rec.expected)
        .bind(&sl)
        .bind(&st)
        .bind(&sv)
        .bind(CHANNEL)
        .bind(payload)
        .fetch_all(ex)
        .await?;
        rows.into_iter().map(|r| id32(r.try_get(0)?)).collect()
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

/// Default optimistic group-commit rounds before falling back to row locks.
const OPTIMISTIC_ATTEMPTS: usize = 4;

/// What a group's logs looked like when read.
#[derive(Default)]
struct Snapshot {
    heads: HashMap<Id32, i64>,
    firsts: HashMap<Id32, i64>,
    epochs: HashMap<Id32, i64>,
    current: HashSet<(Id32, Id32)>,
    versions: HashMap<(Id32, Vec<u8>), i64>,
}

/// Reads heads, epochs, current authors and guarded stream versions for a group in
/// one query.
async fn snapshot<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    group: &[&AppendJob],
) -> StoreResult<Snapshot> {
    let mut logs: Vec<Vec<u8>> = group.iter().map(|j| j.log_id.0.to_vec()).collect();
    logs.sort();
    logs.dedup();
    let (mut d_logs, mut d_devs, mut g_logs, mut g_tags) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for j in group {
        d_logs.push(j.log_id.0.to_vec());
        d_devs.push(j.author.0.to_vec());
        for g in j.records.iter().filter_map(|r| r.guard.as_ref()) {
            g_logs.push(j.log_id.0.to_vec());
            g_tags.push(g.stream_tag.0.clone());
        }
    }
    let rows = sqlx::query(
        "SELECT 0::int8 AS kind, l.log_id AS a, NULL::bytea AS b, l.head_seq AS v FROM logs l WHERE l.log_id = ANY($1) \
         UNION ALL \
         SELECT 3, l.log_id, NULL, l.first_seq FROM logs l WHERE l.log_id = ANY($1) \
         UNION ALL \
         SELECT 4, l.log_id, NULL, l.epoch FROM logs l WHERE l.log_id = ANY($1) \
         UNION ALL \
         SELECT 1, d.log_id, d.device_id, 0 FROM devices d \
           JOIN UNNEST($2::bytea[], $3::bytea[]) AS q(l, a) ON d.log_id = q.l AND d.device_id = q.a \
           WHERE d.revoked_ms IS NULL \
         UNION ALL \
         SELECT 2, s.log_id, s.stream_tag, s.version FROM streams s \
           JOIN UNNEST($4::bytea[], $5::bytea[]) AS q(l, t) ON s.log_id = q.l AND s.stream_tag = q.t",
    )
    .bind(&logs)
    .bind(&d_logs)
    .bind(&d_devs)
    .bind(&g_logs)
    .bind(&g_tags)
    .fetch_all(ex)
    .await?;
    let mut snap = Snapshot::default();
    for r in rows {
        let kind: i64 = r.try_get(0)?;
        let a = id32(r.try_get(1)?)?;
        let b: Option<Vec<u8>> = r.try_get(2)?;
        let v: i64 = r.try_get(3)?;
        match (kind, b) {
            (0, _) => {
                snap.heads.insert(a, v);
            }
            (1, Some(dev)) => {
                snap.current.insert((a, id32(dev)?));
            }
            (2, Some(tag)) => {
                snap.versions.insert((a, tag), v);
            }
            (3, _) => {
                snap.firsts.insert(a, v);
            }
            (4, _) => {
                snap.epochs.insert(a, v);
            }
            _ => {}
        }
    }
    Ok(snap)
}

/// A group decided against a snapshot: per-job outcomes and what to write.
struct Plan {
    out: Vec<AppendOutcome>,
    rec: RecordColumns,
    streams: HashMap<(Id32, Vec<u8>), i64>,
    /// Every existing log the group touched. Logs whose jobs were all refused are
    /// included (unmoved) so the write confirms the snapshot the refusals were
    /// based on.
    logs: HashMap<Id32, LogMove>,
}

/// Where a group moves one log.
struct LogMove {
    /// The head as read: the write applies only if it is still there.
    read: i64,
    /// The new head.
    head: i64,
    /// The new epoch (never lower than the one read).
    epoch: i64,
}

/// Decides each job, in order, against the state left by the jobs before it.
fn plan(group: &[&AppendJob], mut snap: Snapshot) -> Plan {
    let mut p = Plan {
        out: Vec::with_capacity(group.len()),
        rec: RecordColumns::default(),
        streams: HashMap::new(),
        logs: HashMap::new(),
    };
    for job in group {
        let Some(head) = snap.heads.get(&job.log_id).copied() else {
            p.out.push(Err(AppendRejection::NoLog));
            continue;
        };
        let epoch = snap.epochs.get(&job.log_id).copied().unwrap_or(0);
        p.logs.entry(job.log_id).or_insert(LogMove {
            read: head,
            head,
            epoch,
        });
        if !snap.current.contains(&(job.log_id, job.author)) {
            p.out.push(Err(AppendRejection::NotCurrent));
            continue;
        }
        // Before the guards: a device behind a rotation must read the log anyway.
        let epoch = match job.epoch_after(epoch) {
            Ok(epoch) => epoch,
            Err(stale) => {
                p.out.push(Err(stale));
                continue;
            }
        };
        let mut local: Vec<(Vec<u8>, i64)> = Vec::new();
        let mut failed = Vec::new();
        for (index, r) in job.records.iter().enumerate() {
            let Some(g) = &r.guard else { continue };
            let tag = &g.stream_tag.0;
            let at = match local.iter().find(|(t, _)| t == tag) {
                Some((_, v)) => *v,
                None => snap
                    .versions
                    .get(&(job.log_id, tag.clone()))
                    .copied()
                    .unwrap_or(0),
            };
            let next = if at == g.expected_version {
                at + 1
            } else {
                failed.push(FailedGuard {
                    index,
                    stream_tag: g.stream_tag.clone(),
                    expected_version: g.expected_version,
                    current_version: at,
                });
                at
            };
            match local.iter_mut().find(|(t, _)| t == tag) {
                Some(slot) => slot.1 = next,
                None => local.push((tag.clone(), next)),
            }
        }
        if !failed.is_empty() {
            p.out.push(Err(AppendRejection::Guards(failed)));
            continue;
        }
        // A trim racing this group only lowers the count: the check errs on the
        // side of refusing.
        if !job.fits(head, snap.firsts.get(&job.log_id).copied().unwrap_or(1)) {
            p.out.push(Err(AppendRejection::Quota));
            continue;
        }
        let mut seqs = Vec::with_capacity(job.records.len());
        for (i, r) in job.records.iter().enumerate() {
            let seq = head + int(i) + 1;
            p.rec.push(job, seq, r);
            seqs.push(seq);
        }
        let new_head = head + int(job.records.len());
        snap.heads.insert(job.log_id, new_head);
        snap.epochs.insert(job.log_id, epoch);
        if let Some(entry) = p.logs.get_mut(&job.log_id) {
            entry.head = new_head;
            entry.epoch = epoch;
        }
        for (tag, v) in local {
            snap.versions.insert((job.log_id, tag.clone()), v);
            p.streams.insert((job.log_id, tag), v);
        }
        p.out.push(Ok(seqs));
    }
    p
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
