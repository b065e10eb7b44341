//! The constellation log as one device sees it (DESIGN §4, §6).
//!
//! Every state change the identity's other devices must know — a contact created, a
//! message sent with its ratchet delta, prekeys minted, a device authorized, a delivery —
//! is an event appended to the identity's log at its home relay, sealed under the epoch
//! key. The device never writes that shared state directly: it appends, then **folds**
//! the log into its store in relay `seq` order, its own records included, through the one
//! code path here. Two devices that folded the same records hold the same contacts,
//! sessions (up to the messages each has read from mailboxes, which commute with deltas;
//! see `chorus-core`'s `siblings` test), transcripts and prekeys.
//!
//! **Guards.** An event that must not race (a send on a session, contact creation,
//! prekey minting) carries a guard `(stream tag, version)`: the relay accepts it only if
//! the stream is still at that version. A refused append ([`Appended::Conflict`]) is
//! retried by the caller after folding the winner's records — for a send, by
//! re-encrypting on the winner's state.
//!
//! **Transactions.** A page of records is folded in one transaction (one fsync), each
//! record in its own savepoint, and the cursor moves with it: a crash re-applies nothing
//! and skips nothing.
//!
//! **Refusals.** A record that does not authenticate, names another author than the
//! relay stamped, comes from a device outside the roster, or carries an invalid event is
//! skipped: nothing but the cursor moves, and the reason is reported as
//! [`Event::Rejected`](crate::Event::Rejected).

use std::sync::Arc;

use chorus_core::{
    Constellation, Effect, Folded, LogError, Outcome, Record, Sessions, open_epoch_key,
};
pub(crate) use chorus_core::{PREKEY_STREAM, ROSTER_STREAM, session_stream};
use chorus_crypto::{DeviceDhSecret, Entropy, EpochKey};
use chorus_relay_api::{BundledPost, Guard, HexBytes, Id32, RecordIn, RecordOut};
use sqlx::SqliteConnection;

use crate::event::Event;
use crate::handle::{Clock, failpoint};
use crate::relay::RelayClient;
use crate::store::{Folder, log_state};
use crate::{ClientError, Store};

/// Who this device is in the log: the log, its key and the X25519 key each rotation
/// seals the next epoch key to.
pub(crate) struct LogKeys {
    pub(crate) log_id: Id32,
    pub(crate) device: [u8; 32],
    pub(crate) dh: DeviceDhSecret,
}

/// The folded state and the key of the epoch it folds, restored from the store together.
pub(crate) struct Held {
    pub(crate) state: Constellation,
    pub(crate) key: Arc<EpochKey>,
}

/// A record the core sealed ([`Constellation::seal_batch`]), as the relay takes it.
fn record_in(a: &chorus_core::Appendable) -> RecordIn {
    RecordIn {
        epoch: i64::from(a.epoch),
        nonce: HexBytes(a.nonce.to_vec()),
        ciphertext: HexBytes(a.ciphertext.clone()),
        guard: a.guard.map(|(t, v)| Guard {
            stream_tag: HexBytes(t.to_vec()),
            expected_version: v,
        }),
    }
}

/// Records read per request while folding (the largest are ~128 KiB: a page stays
/// well under the client's response bound).
pub const LOG_PAGE: u32 = chorus_relay_api::limits::MAX_PAGE;

/// Records folded in one transaction while catching up: many pages, so that a long
/// catch-up pays one commit (fsync) and one round of statements per `FOLD_BATCH`
/// records rather than per page, and a B-tree page that several records touch
/// (a random-keyed index) is written once per batch (docs/benchmarks.md). A crash
/// loses at most this much folding work, never a record: the cursor commits with it.
pub const FOLD_BATCH: usize = 4096;

/// Ciphertext a batch gathers at most (it ends at the first page that reaches this),
/// whatever the records' sizes: the memory a fold holds stays bounded.
pub const FOLD_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// How much a catch-up gathers before folding: the first page that brings the batch
/// to `records` records or `bytes` of ciphertext ends it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    pub(crate) records: usize,
    pub(crate) bytes: usize,
}

impl Batch {
    /// [`FOLD_BATCH`] records or [`FOLD_BATCH_BYTES`].
    pub(crate) const DEFAULT: Self = Self {
        records: FOLD_BATCH,
        bytes: FOLD_BATCH_BYTES,
    };
}

/// Pages read from the relay ahead of the fold while catching up. Each holds at most
/// [`LOG_PAGE`] records and `MAX_PAGE_BYTES` (4 MiB) of ciphertext — a page over that
/// is refused (`RelayClient::read_records`) — so the pages waiting hold at most
/// 32 MiB, and a batch being folded at most [`FOLD_BATCH_BYTES`] plus one page.
pub const READ_AHEAD_PAGES: usize = 8;

/// How many times a guarded append is retried after losing a race before giving up.
pub const APPEND_ATTEMPTS: usize = 32;

pub(crate) use chorus_core::Pending;

/// The outcome of a guarded append.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    /// In the log, and folded.
    Done,
    /// A guard failed: a sibling got there first. Nothing was appended; the caller
    /// folds (already done) and decides again.
    Conflict,
}

/// The log driver: appends this device's events (sealed, guarded) and folds the log
/// through the core's fold, a page per transaction. It holds what it needs — the log's
/// keys, the store, the relay, randomness and time — and nothing of the device above it.
pub(crate) struct Log {
    pub(crate) keys: LogKeys,
    store: Arc<Store>,
    pub(crate) relay: RelayClient,
    entropy: Arc<dyn Entropy>,
    clock: Arc<dyn Clock>,
    /// The folded log state, restored from the store on first use; the lock also
    /// serializes this process's folds and appends.
    pub(crate) fold: tokio::sync::Mutex<Option<Held>>,
    /// The position this process last acknowledged to the relay.
    acked: std::sync::atomic::AtomicU64,
}

impl Log {
    pub(crate) fn new(
        keys: LogKeys,
        store: Arc<Store>,
        relay: RelayClient,
        entropy: Arc<dyn Entropy>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys,
            store,
            relay,
            entropy,
            clock,
            fold: Default::default(),
            acked: Default::default(),
        }
    }

    /// Tells the relay how far this device folded, if further than this process last
    /// said: the relay trims only what every current device acknowledged (compaction).
    pub(crate) async fn acknowledge(&self) -> Result<(), ClientError> {
        use std::sync::atomic::Ordering;
        let applied = {
            let mut slot = self.fold.lock().await;
            let mut conn = self.store.pool().acquire().await?;
            self.folded(&mut slot, &mut conn).await?.state.applied()
        };
        if applied > self.acked.load(Ordering::Relaxed) {
            self.relay.ack_cursor(applied).await?;
            self.acked.fetch_max(applied, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Compaction: deletes from the relay every record all current devices folded
    /// (their acknowledged cursors, this one's first). A device offline holds it back
    /// at its cursor and is never cut off; one linked later starts from a checkpoint.
    /// Returns the lowest seq the relay still stores.
    pub(crate) async fn compact(&self) -> Result<i64, ClientError> {
        self.acknowledge().await?;
        let below = self
            .relay
            .devices()
            .await?
            .devices
            .iter()
            .filter(|d| d.revoked_ms.is_none())
            .map(|d| d.cursor)
            .min()
            .unwrap_or(0);
        Ok(self.relay.trim(below).await?)
    }

    /// The folded state, restored from the store if this process has none or another
    /// process on the same store folded since (its cursor moved).
    async fn folded<'a>(
        &self,
        slot: &'a mut Option<Held>,
        conn: &mut SqliteConnection,
    ) -> Result<&'a mut Held, ClientError> {
        let stored = log_state::applied_seq(conn).await?;
        if slot.as_ref().is_some_and(|h| h.state.applied() != stored) {
            *slot = None;
        }
        match slot {
            Some(held) => Ok(held),
            None => {
                let state = log_state::load(conn, self.keys.log_id.0).await?;
                let key = Arc::new(log_state::epoch_key(conn, &self.store).await?);
                Ok(slot.insert(Held { state, key }))
            }
        }
    }

    /// The current epoch and its key (as folded, restored if another process folded).
    pub(crate) async fn epoch_key(&self) -> Result<(u32, Arc<EpochKey>), ClientError> {
        let mut slot = self.fold.lock().await;
        let mut conn = self.store.pool().acquire().await?;
        let held = self.folded(&mut slot, &mut conn).await?;
        Ok((held.state.epoch(), held.key.clone()))
    }

    /// The identity's multi-device strategy, as folded.
    pub(crate) async fn strategy(&self) -> Result<chorus_core::Strategy, ClientError> {
        self.with_state(Constellation::strategy).await
    }

    /// What `f` reads of the folded state (restored if another process folded).
    pub(crate) async fn with_state<T>(
        &self,
        f: impl FnOnce(&Constellation) -> T,
    ) -> Result<T, ClientError> {
        let mut slot = self.fold.lock().await;
        let mut conn = self.store.pool().acquire().await?;
        Ok(f(&self.folded(&mut slot, &mut conn).await?.state))
    }

    /// The folded state and a store transaction that agree: the state is restored if
    /// another process on this store folded since, inside the same transaction. A send
    /// decides on it (the session read in `tx` is the one the state's stream version
    /// names). Folds and appends in this process wait while it is held.
    pub(crate) async fn cut(&self) -> Result<Cut<'_>, ClientError> {
        let mut slot = self.fold.lock().await;
        let mut tx = self.store.begin().await?;
        self.folded(&mut slot, &mut tx).await?;
        Ok(Cut { slot, tx })
    }

    /// Seals `events` and appends them in one atomic batch, then folds the log. Guards
    /// use the versions as folded; several events on one stream expect consecutive
    /// versions. With `post`, the relay stores it in the same transaction
    /// (the bundled send). When the relay places the records right after what this
    /// device folded, they are folded from the bytes sent, without reading them
    /// back: the send is one request.
    pub(crate) async fn append_with(
        &self,
        events: Vec<Pending>,
        post: Option<BundledPost>,
    ) -> Result<(Appended, Vec<Event>), ClientError> {
        let (records, ids): (Vec<RecordIn>, Vec<[u8; 16]>) = {
            let mut slot = self.fold.lock().await;
            let mut conn = self.store.pool().acquire().await?;
            let held = self.folded(&mut slot, &mut conn).await?;
            let now = u64::try_from(self.clock.now_ms()).unwrap_or(0);
            held.state
                .seal_batch(
                    &held.key,
                    self.keys.device,
                    events,
                    now,
                    &mut self.entropy.rng(),
                )?
                .into_iter()
                .map(|a| (record_in(&a), a.event_id))
                .unzip()
        };
        let sent = records.clone();
        let (mut outcome, events) = match self.relay.append_bundled(records, post).await {
            Ok(answer) => {
                failpoint("after-append");
                let events = match self.fold_own(sent, &answer.seqs).await? {
                    Some(events) => events,
                    None => self.sync_log().await?,
                };
                (Appended::Done, events)
            }
            // A guard failed, or the log moved to a new epoch this device has not
            // folded: nothing was stored; fold and decide again.
            Err(e) if matches!(e.code(), Some("guard_failed" | "stale_epoch")) => {
                (Appended::Conflict, self.sync_log().await?)
            }
            Err(e) => return Err(e.into()),
        };
        if outcome == Appended::Done && !self.all_folded(&ids).await? {
            // The relay acknowledged records this device's fold then refused or
            // never saw (it let a stale guard through, or hides them from us): lost,
            // so the caller re-does them on the state as folded.
            tracing::warn!("the relay acknowledged an append the log does not show in order");
            outcome = Appended::Conflict;
        }
        Ok((outcome, events))
    }

    /// Appends the rotation the fold says is due now (`chorus_core`'s `epoch` module:
    /// after a revocation, past a record ahead, or a week into the epoch) until none
    /// is: ours, or another device's that got there first. A device the roster no
    /// longer holds never rotates.
    pub(crate) async fn rotate_if_due(&self) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        for _ in 0..APPEND_ATTEMPTS {
            let plan = {
                let mut slot = self.fold.lock().await;
                let mut conn = self.store.pool().acquire().await?;
                let held = self.folded(&mut slot, &mut conn).await?;
                let now = u64::try_from(self.clock.now_ms()).unwrap_or(0);
                if !held.state.rotation_due(now)
                    || !held.state.roster().is_authorized_id(&self.keys.device)
                {
                    return Ok(events);
                }
                held.state.plan_rotation(&held.key, &mut self.entropy.rng())
            };
            let (_, more) = self.append_with(vec![plan.into()], None).await?;
            events.extend(more);
        }
        Err(ClientError::Contended)
    }

    /// Whether the prekeys and mailboxes are due for renewal after a revocation
    /// (decided by the fold: `Constellation::renewal_due`), as folded; never for a
    /// device the roster no longer holds.
    pub(crate) async fn renewal_due(&self) -> Result<bool, ClientError> {
        let mut slot = self.fold.lock().await;
        let mut conn = self.store.pool().acquire().await?;
        let held = self.folded(&mut slot, &mut conn).await?;
        Ok(held.state.renewal_due() && held.state.roster().is_authorized_id(&self.keys.device))
    }

    /// The mailbox renewal as folded now (`Constellation::plan_renewal`).
    pub(crate) async fn plan_renewal(&self) -> Result<Vec<chorus_core::Guarded>, ClientError> {
        let mut slot = self.fold.lock().await;
        let mut conn = self.store.pool().acquire().await?;
        let held = self.folded(&mut slot, &mut conn).await?;
        Ok(held.state.plan_renewal(&held.key, &mut self.entropy.rng()))
    }

    /// Folds this device's own records at the seqs the relay gave them, if they
    /// come right after the folded cursor; `None` (nothing done) otherwise, and the
    /// log is read instead. The relay's answer is trusted no more than a page it
    /// serves: a relay placing them elsewhere shows this device a history its
    /// siblings do not share, which the next sibling record's head exposes.
    async fn fold_own(
        &self,
        records: Vec<RecordIn>,
        seqs: &[i64],
    ) -> Result<Option<Vec<Event>>, ClientError> {
        let mut slot = self.fold.lock().await;
        let applied = {
            let mut conn = self.store.pool().acquire().await?;
            self.folded(&mut slot, &mut conn).await?.state.applied()
        };
        let follows = seqs.len() == records.len()
            && seqs
                .iter()
                .zip(1u64..)
                .all(|(&seq, i)| u64::try_from(seq).ok() == applied.checked_add(i));
        if !follows {
            return Ok(None);
        }
        let author = Id32(self.keys.device);
        let page: Vec<RecordOut> = records
            .into_iter()
            .zip(seqs)
            .map(|(r, &seq)| RecordOut {
                seq,
                epoch: r.epoch,
                author,
                nonce: r.nonce,
                ciphertext: r.ciphertext,
                guard: r.guard,
            })
            .collect();
        Ok(Some(self.fold_locked(&mut slot, &page).await?))
    }

    /// Whether every one of these events is folded.
    async fn all_folded(&self, ids: &[[u8; 16]]) -> Result<bool, ClientError> {
        let mut slot = self.fold.lock().await;
        let mut conn = self.store.pool().acquire().await?;
        let held = self.folded(&mut slot, &mut conn).await?;
        Ok(ids.iter().all(|id| held.state.has_seen(id)))
    }

    /// Reads the log after the folded cursor and folds every record, in seq order.
    pub(crate) async fn sync_log(&self) -> Result<Vec<Event>, ClientError> {
        self.sync_log_with(|_| {}).await
    }

    /// [`Self::sync_log`], telling `progress` the seq folded after each batch. Pages
    /// are read from the relay ahead of the fold ([`Reader`]); the pages already read
    /// when a fold starts are folded together, up to [`FOLD_BATCH`] records in one
    /// transaction. The reading is speculative: a batch that fails to fold ends the
    /// sync, and what was read ahead is dropped.
    pub(crate) async fn sync_log_with(
        &self,
        progress: impl FnMut(u64),
    ) -> Result<Vec<Event>, ClientError> {
        self.catch_up(Batch::DEFAULT, progress).await
    }

    /// [`Self::sync_log_with`] with batches bounded by `limit`.
    async fn catch_up(
        &self,
        limit: Batch,
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<Event>, ClientError> {
        let mut slot = self.fold.lock().await;
        let folded = {
            let mut conn = self.store.pool().acquire().await?;
            self.folded(&mut slot, &mut conn).await?.state.applied()
        };
        let mut reader = self.reader(folded);
        let mut read = i64::try_from(folded).unwrap_or(i64::MAX);
        let mut events = Vec::new();
        let mut batch: Vec<RecordOut> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut page = reader.next().await?;
        loop {
            if read.saturating_add(1) < page.first_seq {
                return Err(ClientError::Corrupt(format!(
                    "the log was trimmed below seq {} before this device read it",
                    page.first_seq
                )));
            }
            // A relay claiming more but sending nothing new would loop forever: stop.
            let last = page
                .records
                .iter()
                .map(|r| r.seq)
                .max()
                .filter(|&l| l > read);
            if let Some(last) = last {
                read = last;
                batch_bytes += page
                    .records
                    .iter()
                    .map(|r| r.ciphertext.0.len())
                    .sum::<usize>();
                batch.extend(std::mem::take(&mut page.records));
                if batch.len() < limit.records
                    && batch_bytes < limit.bytes
                    && let Some(ready) = reader.ready()
                {
                    page = ready?;
                    continue;
                }
            }
            if !batch.is_empty() {
                events.extend(self.fold_locked(&mut slot, &batch).await?);
                batch.clear();
                batch_bytes = 0;
                progress(slot.as_ref().map_or(0, |h| h.state.applied()));
            }
            if last.is_none() {
                return Ok(events);
            }
            page = reader.next().await?;
        }
    }

    /// Starts reading the pages after `after` in the background.
    fn reader(&self, after: u64) -> Reader {
        let relay = self.relay.clone();
        let (tx, pages) = tokio::sync::mpsc::channel(READ_AHEAD_PAGES);
        let mut after = i64::try_from(after).unwrap_or(i64::MAX);
        let task = tokio::spawn(async move {
            loop {
                let page = relay.read_records(after, LOG_PAGE).await;
                let next = match &page {
                    Ok(p) => p.records.iter().map(|r| r.seq).max().filter(|&l| l > after),
                    Err(_) => None,
                };
                // The last page sent is one with nothing new (or an error): the fold
                // stops there and never waits for another.
                if tx.send(page).await.is_err() {
                    return;
                }
                match next {
                    Some(last) => after = last,
                    None => return,
                }
            }
        });
        Reader {
            url: self.relay.url().to_owned(),
            pages,
            task,
        }
    }

    /// Seals `event` as this device would append it now (tests forge records with it).
    #[cfg(test)]
    pub(crate) async fn seal(
        &self,
        event: &chorus_wire::LogEvent,
        guard: Option<([u8; 32], i64)>,
    ) -> Result<RecordIn, ClientError> {
        use chorus_core::{RecordContext, seal_event};
        let mut slot = self.fold.lock().await;
        let mut conn = self.store.pool().acquire().await?;
        let held = self.folded(&mut slot, &mut conn).await?;
        let rotation = matches!(event.kind, chorus_wire::EventKind::EpochRotated(_));
        let epoch = held.state.epoch().saturating_add(u32::from(rotation));
        let context = RecordContext {
            log_id: self.keys.log_id.0,
            epoch,
            author: event.author,
            guard: guard.as_ref().map(|(t, v)| (&t[..], *v)),
        };
        let sealed = seal_event(&held.key, &context, event, &mut self.entropy.rng())?;
        Ok(record_in(&chorus_core::Appendable {
            event_id: event.event_id,
            epoch,
            guard,
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        }))
    }

    /// Folds a page of records the relay showed ([`Self::fold_locked`]).
    #[cfg(test)]
    pub(crate) async fn fold_page(&self, records: &[RecordOut]) -> Result<Vec<Event>, ClientError> {
        let mut slot = self.fold.lock().await;
        self.fold_locked(&mut slot, records).await
    }

    /// Folds a page through the core's fold and persists what it decided in one
    /// transaction (one fsync): the records' effects, the sessions they changed and
    /// the log position. Records must continue the cursor: a relay skipping a seq is
    /// an error, and nothing of the page is kept. If the transaction fails, the state
    /// in memory is dropped and restored from the store next time.
    async fn fold_locked(
        &self,
        slot: &mut Option<Held>,
        records: &[RecordOut],
    ) -> Result<Vec<Event>, ClientError> {
        let mut tx = self.store.begin().await?;
        let shown: Vec<Record<'_>> = records
            .iter()
            .map(|r| Record {
                // Seqs and epochs come from the relay: out of range refuses the record
                // or the page, never wraps.
                seq: u64::try_from(r.seq).unwrap_or(0),
                epoch: u32::try_from(r.epoch).unwrap_or(u32::MAX),
                author: r.author.0,
                guard: r
                    .guard
                    .as_ref()
                    .map(|g| (g.stream_tag.0.as_slice(), g.expected_version)),
                nonce: &r.nonce.0,
                ciphertext: &r.ciphertext.0,
            })
            .collect();
        let mut events = Vec::new();
        // The core's fold stops after a rotation: the rest of the page is opened
        // again with the key it sealed to this device.
        let written = loop {
            match self.fold_part(slot, &mut tx, &shown).await {
                Ok((part, more)) => {
                    events.extend(part);
                    if !more {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let committed = match written {
            Ok(()) => tx.commit().await.map_err(ClientError::from),
            Err(e) => Err(e),
        };
        if committed.is_err() {
            *slot = None;
        }
        committed.map(|()| events)
    }

    /// Folds the records of `shown` this state has not folded, up to the first
    /// rotation, and persists them in `tx`; says whether a rotation ended the part with
    /// records left to fold under its key.
    async fn fold_part(
        &self,
        slot: &mut Option<Held>,
        tx: &mut SqliteConnection,
        shown: &[Record<'_>],
    ) -> Result<(Vec<Event>, bool), ClientError> {
        let held = self.folded(slot, tx).await?;
        let state = &mut held.state;
        let opened: Vec<_> = shown
            .iter()
            .map(|r| {
                if r.seq > state.applied() {
                    state.open(&held.key, r)
                } else {
                    Err(LogError::Undecryptable)
                }
            })
            .collect();
        let mut sessions = Sessions::default();
        for root in state.sessions_needed(&opened) {
            if let Some(alias) = state.contact(&root).map(|c| c.alias.clone())
                && let Some(session) = self.store.get_session(tx, &alias).await?
            {
                sessions.insert(root, session);
            }
        }
        let folded = state
            .fold_page(&held.key, shown, opened, &mut sessions)
            .map_err(|e| {
                ClientError::Relay(crate::RelayError::BadResponse {
                    url: self.relay.url().to_owned(),
                    reason: e.to_string(),
                })
            })?;
        // A rotation is the last record folded: the new key sealed to this device.
        let new_key = match rotation(&folded) {
            Some(r) => Some(open_epoch_key(
                &self.keys.log_id.0,
                &self.keys.device,
                &self.keys.dh,
                r,
            )?),
            None => None,
        };
        let me = Folder {
            device: self.keys.device,
            dh: &self.keys.dh,
            relay_url: self.relay.url(),
            epoch_key: new_key.as_ref(),
        };
        let events = self
            .store
            .persist_fold(tx, &me, state, folded, &sessions)
            .await?;
        let last = shown.iter().map(|r| r.seq).max().unwrap_or(0);
        let more = new_key.is_some() && state.applied() < last;
        if let Some(key) = new_key {
            held.key = Arc::new(key);
        }
        Ok((events, more))
    }
}

/// The rotation a folded part ends with, if it does.
fn rotation(folded: &[Folded]) -> Option<&chorus_wire::EpochRotation> {
    match &folded.last()?.outcome {
        Outcome::Applied(effects) => effects.iter().find_map(|e| match e {
            Effect::EpochRotated(r) => Some(&**r),
            _ => None,
        }),
        _ => None,
    }
}

/// See [`Log::cut`].
pub(crate) struct Cut<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<Held>>,
    pub(crate) tx: sqlx::Transaction<'static, sqlx::Sqlite>,
}

impl Cut<'_> {
    /// The folded state.
    pub(crate) fn state(&self) -> Result<&Constellation, ClientError> {
        self.held().map(|h| &h.state)
    }

    /// The current epoch's key (stream tags, sends).
    pub(crate) fn key(&self) -> Result<&EpochKey, ClientError> {
        self.held().map(|h| &*h.key)
    }

    fn held(&self) -> Result<&Held, ClientError> {
        self.slot
            .as_ref()
            .ok_or_else(|| ClientError::Corrupt("the folded state".into()))
    }
}

/// Pages being read from the relay, in order, at most [`READ_AHEAD_PAGES`] ahead of
/// the fold; dropped, the reading stops.
struct Reader {
    url: String,
    pages: tokio::sync::mpsc::Receiver<Result<chorus_relay_api::RecordsPage, crate::RelayError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// The next page, waiting for it.
    async fn next(&mut self) -> Result<chorus_relay_api::RecordsPage, ClientError> {
        match self.pages.recv().await {
            Some(page) => Ok(page?),
            None => Err(ClientError::Relay(crate::RelayError::Unreachable {
                url: self.url.clone(),
                reason: "reading the log stopped".into(),
            })),
        }
    }

    /// The next page if it was read already.
    fn ready(&mut self) -> Option<Result<chorus_relay_api::RecordsPage, ClientError>> {
        self.pages
            .try_recv()
            .ok()
            .map(|p| p.map_err(ClientError::from))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "epoch_tests.rs"]
mod epoch_tests;
