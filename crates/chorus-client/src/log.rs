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

use std::collections::{BTreeMap, HashMap, HashSet};

use chorus_core::{
    Constellation, Effect, Folded, HistoryEntry, LogError, Outcome, Record, Roster, Sessions,
    StreamHead,
};
pub(crate) use chorus_core::{PREKEY_STREAM, session_stream};
use chorus_crypto::EpochKey;
use chorus_relay_api::{BundledPost, Id32, RecordIn, RecordOut};
use chorus_wire::{ChainLink, EventKind, LogEvent, SentMessage};
use sqlx::SqliteConnection;

use crate::contacts::insert_contact;
use crate::event::{Event, Message};
use crate::handle::{Device, failpoint};
use crate::history::{HistoryRow, insert_and_tell};
use crate::log_state;
use crate::store::row;
use crate::{ClientError, Store};

/// Records read per request while folding (the largest are ~128 KiB: a page stays
/// well under the client's response bound).
pub const LOG_PAGE: u32 = chorus_relay_api::limits::MAX_PAGE;

/// How many times a guarded append is retried after losing a race before giving up.
pub const APPEND_ATTEMPTS: usize = 32;

/// An event to append, with the stream it is guarded on and the version expected
/// (`None`: the version as folded when the batch is sealed).
pub(crate) struct Pending {
    pub(crate) kind: EventKind,
    pub(crate) guard: Option<(Vec<u8>, Option<i64>)>,
}

impl Pending {
    pub(crate) fn free(kind: EventKind) -> Self {
        Self { kind, guard: None }
    }

    pub(crate) fn guarded(kind: EventKind, stream: Vec<u8>, version: Option<i64>) -> Self {
        Self {
            kind,
            guard: Some((stream, version)),
        }
    }
}

/// The outcome of a guarded append.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    /// In the log, and folded.
    Done,
    /// A guard failed: a sibling got there first. Nothing was appended; the caller
    /// folds (already done) and decides again.
    Conflict,
}

/// The version a stream is at, as folded.
pub(crate) async fn stream_version(
    conn: &mut SqliteConnection,
    tag: &[u8],
) -> Result<i64, ClientError> {
    Ok(stream_head(conn, tag).await?.version)
}

/// A stream as folded: its next version and the hash of its last record.
pub(crate) async fn stream_head(
    conn: &mut SqliteConnection,
    tag: &[u8],
) -> Result<StreamHead, ClientError> {
    let row: Option<(i64, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT version, head FROM streams WHERE tag = $1")
            .bind(tag)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        None => StreamHead::default(),
        Some((version, head)) => StreamHead {
            version,
            head: head.map(|h| hash32(&h)).transpose()?,
        },
    })
}

fn hash32(bytes: &[u8]) -> Result<[u8; 32], ClientError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| ClientError::Corrupt("a stored hash".into()))
}

/// The roster as folded: the stored chain, validated whole.
pub(crate) async fn load_roster(
    conn: &mut SqliteConnection,
    log_id: &Id32,
) -> Result<Roster, ClientError> {
    let entries: Vec<Vec<u8>> = sqlx::query_scalar("SELECT entry FROM roster ORDER BY idx")
        .fetch_all(&mut *conn)
        .await?;
    Roster::validate_chain(log_id.0, &entries)
        .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))
}

impl Device {
    /// The folded state, restored from the store if this process has none or another
    /// process on the same store folded since (its cursor moved).
    async fn folded<'a>(
        &self,
        slot: &'a mut Option<Constellation>,
        conn: &mut SqliteConnection,
    ) -> Result<&'a mut Constellation, ClientError> {
        let stored = log_state::applied_seq(conn).await?;
        if slot.as_ref().is_some_and(|s| s.applied() != stored) {
            *slot = None;
        }
        match slot {
            Some(state) => Ok(state),
            None => {
                Ok(slot.insert(log_state::load(conn, self.log.log_id.0, self.log.epoch).await?))
            }
        }
    }

    /// Seals `events` and appends them in one atomic batch, then folds the log. Guards
    /// use the versions as folded; several events on one stream expect consecutive
    /// versions.
    pub(crate) async fn append(
        &self,
        events: Vec<Pending>,
    ) -> Result<(Appended, Vec<Event>), ClientError> {
        self.append_with(events, None).await
    }

    /// [`Self::append`], with `post` stored by the relay in the same transaction
    /// (the bundled send). When the relay places the records right after what this
    /// device folded, they are folded from the bytes sent, without reading them
    /// back: the send is one request.
    pub(crate) async fn append_with(
        &self,
        events: Vec<Pending>,
        post: Option<BundledPost>,
    ) -> Result<(Appended, Vec<Event>), ClientError> {
        let keys = &self.log;
        let records_and_ids = {
            let mut slot = self.fold.lock().await;
            let mut conn = self.store.pool().acquire().await?;
            let state = self.folded(&mut slot, &mut conn).await?;
            // Where this device stands: every record names it (`chorus_core::chain`).
            let head = state.head();
            let mut streams: HashMap<Vec<u8>, StreamHead> = HashMap::new();
            let mut records = Vec::with_capacity(events.len());
            let mut ids = Vec::with_capacity(events.len());
            for (i, p) in events.into_iter().enumerate() {
                let (guard, stream_prev) = match &p.guard {
                    None => (None, None),
                    Some((name, expected)) => {
                        let tag = keys.key.stream_tag(name);
                        let folded = match streams.get(name) {
                            Some(s) => *s,
                            None => state.stream(&tag),
                        };
                        (Some((tag, expected.unwrap_or(folded.version))), folded.head)
                    }
                };
                let event = LogEvent {
                    event_id: self.random(),
                    lamport: state.lamport().saturating_add(1 + i as u64),
                    timestamp_ms: u64::try_from(self.now()).unwrap_or(0),
                    author: keys.device,
                    chain: ChainLink { stream_prev, head },
                    kind: p.kind,
                };
                let record = keys.seal(&event, guard, &*self.options.entropy)?;
                if let (Some((name, _)), Some((_, version))) = (p.guard, guard) {
                    // The next event on this stream in the batch follows this record.
                    let hash = keys.record_hash(
                        record.epoch,
                        &keys.device,
                        record.guard.as_ref(),
                        &record.nonce.0,
                        &record.ciphertext.0,
                    );
                    let at = StreamHead {
                        version,
                        head: stream_prev,
                    };
                    streams.insert(name, at.advanced(hash));
                }
                ids.push(event.event_id);
                records.push(record);
            }
            (records, ids)
        };
        let (records, ids) = records_and_ids;
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
            Err(e) if e.code() == Some("guard_failed") => {
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
            self.folded(&mut slot, &mut conn).await?.applied()
        };
        let follows = seqs.len() == records.len()
            && seqs
                .iter()
                .zip(1u64..)
                .all(|(&seq, i)| u64::try_from(seq).ok() == applied.checked_add(i));
        if !follows {
            return Ok(None);
        }
        let author = Id32(self.log.device);
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
        let state = self.folded(&mut slot, &mut conn).await?;
        Ok(ids.iter().all(|id| state.has_seen(id)))
    }

    /// Reads the log after the folded cursor and folds every record, in seq order.
    pub async fn sync_log(&self) -> Result<Vec<Event>, ClientError> {
        self.sync_log_with(|_| {}).await
    }

    /// [`Self::sync_log`], telling `progress` the seq folded after each page. The next
    /// page is read from the relay while this one folds (the read is speculative: a
    /// page that fails to fold ends the sync, and the read ahead is dropped).
    pub(crate) async fn sync_log_with(
        &self,
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<Event>, ClientError> {
        let mut slot = self.fold.lock().await;
        let mut after = {
            let mut conn = self.store.pool().acquire().await?;
            self.folded(&mut slot, &mut conn).await?.applied()
        };
        let mut next = self.read_ahead(after);
        let mut events = Vec::new();
        loop {
            let page = next.result().await?;
            let after_seq = i64::try_from(after).unwrap_or(i64::MAX);
            if after_seq.saturating_add(1) < page.first_seq {
                return Err(ClientError::Corrupt(format!(
                    "the log was trimmed below seq {} before this device read it",
                    page.first_seq
                )));
            }
            // A relay claiming more but sending nothing new would loop forever: stop.
            let Some(last) = page.records.iter().map(|r| r.seq).max() else {
                break;
            };
            if last <= after_seq {
                break;
            }
            next = self.read_ahead(u64::try_from(last).unwrap_or(0));
            events.extend(self.fold_locked(&mut slot, &page.records).await?);
            after = slot.as_ref().map_or(0, Constellation::applied);
            progress(after);
        }
        Ok(events)
    }

    /// Starts reading the page after `after` in the background.
    fn read_ahead(&self, after: u64) -> ReadAhead {
        let relay = self.relay.clone();
        let url = self.me.relay_url.clone();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        ReadAhead {
            url,
            task: tokio::spawn(async move { relay.read_records(after, LOG_PAGE).await }),
        }
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
        slot: &mut Option<Constellation>,
        records: &[RecordOut],
    ) -> Result<Vec<Event>, ClientError> {
        let mut tx = self.store.begin().await?;
        let state = self.folded(slot, &mut tx).await?;
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
        let opened: Vec<_> = shown
            .iter()
            .map(|r| {
                if r.seq > state.applied() {
                    state.open(&self.log.key, r)
                } else {
                    Err(LogError::Undecryptable)
                }
            })
            .collect();
        let mut sessions = Sessions::default();
        for root in state.sessions_needed(&opened) {
            if let Some(alias) = state.contact(&root).map(|c| c.alias.clone())
                && let Some(session) = self.store.get_session(&mut tx, &alias).await?
            {
                sessions.insert(root, session);
            }
        }
        let folded = match state.fold_page(&self.log.key, &shown, opened, &mut sessions) {
            Ok(folded) => folded,
            Err(e) => {
                return Err(ClientError::Relay(crate::RelayError::BadResponse {
                    url: self.me.relay_url.clone(),
                    reason: e.to_string(),
                }));
            }
        };
        let written = self.persist(&mut tx, state, folded, &sessions).await;
        let events = match written {
            Ok(events) => tx
                .commit()
                .await
                .map(|()| events)
                .map_err(ClientError::from),
            Err(e) => Err(e),
        };
        if events.is_err() {
            *slot = None;
        }
        events
    }

    /// Writes what the fold decided for a page, batched by table, and says what the
    /// person should hear.
    async fn persist(
        &self,
        tx: &mut SqliteConnection,
        state: &Constellation,
        folded: Vec<Folded>,
        sessions: &Sessions,
    ) -> Result<Vec<Event>, ClientError> {
        let mut page = PageWrites::default();
        let mut events: Vec<Option<Event>> = Vec::new();
        for f in folded {
            page.chain.push((f.seq, f.chain));
            match f.outcome {
                Outcome::Applied(effects) => {
                    for effect in effects {
                        self.persist_one(tx, &mut page, &mut events, f.seq, effect)
                            .await?;
                    }
                }
                Outcome::Duplicate => {
                    tracing::warn!(seq = f.seq, "log record replays an event already folded");
                    events.push(Some(Event::Rejected {
                        reason: format!(
                            "log record {}: replays an event already folded (harmless: nothing changed)",
                            f.seq
                        ),
                    }));
                }
                Outcome::Refused(e) => {
                    let relay_at_fault = matches!(
                        e,
                        LogError::StreamVersion { .. }
                            | LogError::StreamPredecessor
                            | LogError::Equivocation { .. }
                            | LogError::HeadAhead { .. }
                    );
                    let reason = if relay_at_fault {
                        // Loud: only a dishonest (or broken) relay shows this.
                        tracing::error!(seq = f.seq, error = %e, "the relay's log does not verify");
                        format!(
                            "log record {}: {e} — the relay {} is not keeping the log honestly",
                            f.seq, self.me.relay_url
                        )
                    } else {
                        tracing::warn!(seq = f.seq, error = %e, "log record rejected");
                        format!("log record {}: {e}", f.seq)
                    };
                    events.push(Some(Event::Rejected { reason }));
                }
            }
        }
        page.flush(self, tx, &mut events).await?;
        for (root, session) in sessions.changed() {
            if let Some(c) = state.contact(root) {
                self.store.put_session(tx, &c.alias, session).await?;
            }
        }
        log_state::write_position(
            tx,
            &page.chain,
            &page.seen,
            &page.streams,
            page.lamport,
            state.applied(),
        )
        .await?;
        Ok(events.into_iter().flatten().collect())
    }

    /// Persists one effect (the batchable ones into `page`).
    async fn persist_one(
        &self,
        tx: &mut SqliteConnection,
        page: &mut PageWrites,
        events: &mut Vec<Option<Event>>,
        seq: u64,
        effect: Effect,
    ) -> Result<(), ClientError> {
        match effect {
            Effect::Seen(id) => page.seen.push(id),
            Effect::Lamport(l) => page.lamport = page.lamport.max(l),
            Effect::Stream { tag, head } => {
                page.streams.insert(tag, head);
            }
            Effect::RosterEntry { index, entry } => {
                sqlx::query("INSERT INTO roster (idx, entry) VALUES ($1, $2)")
                    .bind(log_state::signed(index))
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?;
            }
            Effect::DeviceAuthorized { device, name, by } => {
                // Every device hears that a device joined, and which device let it in.
                if device != self.log.device {
                    events.push(Some(Event::DeviceLinked { name, by }));
                }
            }
            Effect::DeviceRelinked { device, name, by } => {
                if device != self.log.device {
                    events.push(Some(Event::DeviceRelinked { name, by }));
                }
            }
            Effect::Register { name, value } => {
                log_state::write_register(tx, &name, &value).await?;
            }
            Effect::Profile(name) => {
                sqlx::query("UPDATE identity SET name = $1 WHERE id = 1")
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
            }
            Effect::Prekeys {
                keys,
                invitation_mailbox,
                at_ms,
            } => {
                let at_ms = log_state::signed(at_ms);
                for k in &keys {
                    crate::prekeys::insert_secret(&self.store, tx, k, at_ms).await?;
                }
                if let Some(m) = invitation_mailbox {
                    sqlx::query(
                        "INSERT OR IGNORE INTO mailboxes (mailbox_id, kind, contact, created_ms)
                         VALUES ($1, 'invitation', NULL, $2)",
                    )
                    .bind(&m[..])
                    .bind(at_ms)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            Effect::PrekeysConsumed(ids) => {
                crate::prekeys::delete_consumed_ids(tx, &ids).await?;
            }
            Effect::HandshakeSeen { root, base_key } => {
                sqlx::query(
                    "INSERT OR IGNORE INTO handshakes (contact_root, base_key) VALUES ($1, $2)",
                )
                .bind(&root[..])
                .bind(&base_key[..])
                .execute(&mut *tx)
                .await?;
            }
            Effect::ContactAdded {
                root,
                alias,
                details: d,
                ours,
            } => {
                let added_ms = log_state::signed(d.added_ms);
                // Their invitation if we accepted one; ours is marked spent below.
                let theirs = if ours { None } else { d.invitation.as_ref() };
                insert_contact(
                    tx,
                    &alias,
                    &d.identity,
                    &d.relay_url,
                    &d.send_mailbox,
                    &d.recv_mailbox,
                    theirs.map(|m| &m[..]),
                    added_ms,
                )
                .await?;
                if d.first.is_some() {
                    sqlx::query("UPDATE contacts SET answered = 1 WHERE name = $1")
                        .bind(&alias)
                        .execute(&mut *tx)
                        .await?;
                }
                contact_mailbox(tx, &d.recv_mailbox, &alias, added_ms).await?;
                // A device that held this identity's message request: it ends here.
                self.settle_request(tx, &root, &alias, added_ms).await?;
                tracing::debug!(seq, contact = %alias, "contact folded");
                events.push(Some(Event::ContactAdded { contact: alias }));
            }
            Effect::ContactReplaced { alias, details: d } => {
                let since_ms = log_state::signed(d.added_ms);
                // Their invitation, if we started this session by accepting one.
                let theirs = match &d.invitation {
                    Some(m) if d.first.is_none() => Some(&m[..]),
                    _ => None,
                };
                sqlx::query(
                    "UPDATE contacts SET identity = $1, relay_url = $2, send_mailbox = $3,
                     recv_mailbox = $4, hello_acked = 0, answered = $5, failed = NULL,
                     invitation = COALESCE($6, invitation),
                     invitation_claim = CASE WHEN $6 IS NULL THEN invitation_claim END
                     WHERE name = $7",
                )
                .bind(d.identity.encode())
                .bind(&d.relay_url)
                .bind(&d.send_mailbox[..])
                .bind(&d.recv_mailbox[..])
                .bind(d.first.is_some())
                .bind(theirs)
                .bind(&alias)
                .execute(&mut *tx)
                .await?;
                // The old mailbox stays: what is on its way there is still read.
                contact_mailbox(tx, &d.recv_mailbox, &alias, since_ms).await?;
                tracing::debug!(seq, contact = %alias, "second handshake folded");
                events.push(Some(Event::SessionReset { contact: alias }));
            }
            Effect::SessionRetired {
                alias,
                seq,
                since_ms,
                session,
            } => {
                self.store
                    .put_stale_session(
                        tx,
                        &alias,
                        log_state::signed(seq),
                        log_state::signed(since_ms),
                        &session,
                    )
                    .await?;
            }
            Effect::InvitationSpent { mailbox, alias } => {
                sqlx::query(
                    "UPDATE mailboxes SET contact = $1 WHERE mailbox_id = $2 AND kind = 'invitation'",
                )
                .bind(&alias)
                .bind(&mailbox[..])
                .execute(&mut *tx)
                .await?;
            }
            Effect::Message(entry) => {
                // A sibling's send is news here; our own is not.
                let tell = !(entry.outgoing && entry.author == self.log.device);
                page.message(self, events, entry, tell);
            }
            Effect::Sent {
                alias,
                sent,
                author,
                at_ms,
            } => page.sent(alias, *sent, author, at_ms),
            Effect::Delivered { envelope_id } => page.delivered(envelope_id),
            Effect::Read { alias, up_to } => {
                sqlx::query("UPDATE contacts SET read_up_to = MAX(read_up_to, $1) WHERE name = $2")
                    .bind(log_state::signed(up_to))
                    .bind(&alias)
                    .execute(&mut *tx)
                    .await?;
            }
            Effect::Blocked { root, blocked } => {
                if blocked {
                    self.drop_request_of(tx, &root).await?;
                }
            }
            Effect::Renamed { from, to } => {
                // Rows written under the old alias must be there to be renamed.
                page.flush(self, tx, events).await?;
                self.store.rename_contact(tx, &from, &to).await?;
            }
        }
        Ok(())
    }
}

/// A sent envelope waiting in the page for the outbox.
struct Outgoing {
    alias: String,
    sent: SentMessage,
    author: [u8; 32],
    at_ms: u64,
}

/// A page being read from the relay; dropped, the read is cancelled.
struct ReadAhead {
    url: String,
    task: tokio::task::JoinHandle<Result<chorus_relay_api::RecordsPage, crate::RelayError>>,
}

impl ReadAhead {
    async fn result(&mut self) -> Result<chorus_relay_api::RecordsPage, ClientError> {
        match (&mut self.task).await {
            Ok(page) => Ok(page?),
            Err(e) => Err(ClientError::Relay(crate::RelayError::Unreachable {
                url: self.url.clone(),
                reason: format!("reading the log stopped: {e}"),
            })),
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The writes of a page that are batched into multi-row statements: the fold of a
/// burst of sends is a few statements per page, not several per record.
#[derive(Default)]
struct PageWrites {
    chain: Vec<(u64, [u8; 32])>,
    seen: Vec<[u8; 16]>,
    streams: BTreeMap<Vec<u8>, StreamHead>,
    lamport: u64,
    outgoing: Vec<Outgoing>,
    delivered: Vec<[u8; 16]>,
    history: Vec<HistoryRow>,
}

impl PageWrites {
    fn message(
        &mut self,
        device: &Device,
        events: &mut Vec<Option<Event>>,
        entry: HistoryEntry,
        tell: bool,
    ) {
        let (sent_ms, stored_ms) = (
            log_state::signed(entry.sent_ms),
            log_state::signed(entry.stored_ms),
        );
        let sealed = device.store.seal(
            "message",
            &row::message(&entry.envelope_id, &entry.alias, entry.outgoing),
            entry.text.as_bytes(),
        );
        let event = tell.then(|| {
            events.push(Some(Event::Message(Message {
                contact: entry.alias.clone(),
                outgoing: entry.outgoing,
                text: entry.text,
                sent_ms,
                stored_ms,
            })));
            events.len() - 1
        });
        self.history.push(HistoryRow {
            alias: entry.alias,
            outgoing: entry.outgoing,
            envelope_id: entry.envelope_id,
            sealed,
            sent_ms,
            stored_ms,
            position: log_state::signed(entry.position),
            event,
        });
    }

    fn sent(&mut self, alias: String, sent: SentMessage, author: [u8; 32], at_ms: u64) {
        self.outgoing.push(Outgoing {
            alias,
            sent,
            author,
            at_ms,
        });
    }

    fn delivered(&mut self, envelope_id: [u8; 16]) {
        self.delivered.push(envelope_id);
    }

    /// Writes what is batched so far.
    async fn flush(
        &mut self,
        device: &Device,
        tx: &mut SqliteConnection,
        events: &mut [Option<Event>],
    ) -> Result<(), ClientError> {
        let _ = device;
        // A send delivered within the page never enters the outbox.
        let delivered: HashSet<[u8; 16]> = self.delivered.drain(..).collect();
        let outgoing: Vec<Outgoing> = std::mem::take(&mut self.outgoing);
        let (done, waiting): (Vec<_>, Vec<_>) = outgoing
            .into_iter()
            .partition(|o| delivered.contains(&o.sent.envelope_id));
        // Our first envelope to their invitation is our claim on its mailbox.
        let mut claimed = HashSet::new();
        for o in done.iter().chain(&waiting) {
            if claimed.insert(o.alias.clone()) {
                sqlx::query(
                    "UPDATE contacts SET invitation_claim = $1
                     WHERE name = $2 AND invitation = $3 AND invitation_claim IS NULL",
                )
                .bind(&o.sent.envelope_id[..])
                .bind(&o.alias)
                .bind(&o.sent.mailbox[..])
                .execute(&mut *tx)
                .await?;
            }
        }
        let ids: Vec<[u8; 16]> = done
            .iter()
            .chain(&waiting)
            .map(|o| o.sent.envelope_id)
            .collect();
        log_state::delete_envelopes(tx, "pending_sends", &ids).await?;
        log_state::insert_rows(
            tx,
            "INSERT OR IGNORE INTO outbox (envelope_id, contact, relay_url, mailbox_id, envelope, created_ms, author)",
            "",
            7,
            &waiting,
            |q, o| {
                q.bind(&o.sent.envelope_id[..])
                    .bind(&o.alias)
                    .bind(&o.sent.relay_url)
                    .bind(&o.sent.mailbox[..])
                    .bind(&o.sent.envelope)
                    .bind(log_state::signed(o.at_ms))
                    .bind(&o.author[..])
            },
        )
        .await?;
        let delivered: Vec<[u8; 16]> = delivered.into_iter().collect();
        log_state::delete_envelopes(tx, "outbox", &delivered).await?;
        let history = std::mem::take(&mut self.history);
        insert_and_tell(tx, &history, events).await
    }
}

/// The mailbox we created for a contact, registered at the relay by whichever
/// device flushes first (idempotent).
async fn contact_mailbox(
    tx: &mut SqliteConnection,
    mailbox: &[u8; 32],
    contact: &str,
    created_ms: i64,
) -> Result<(), ClientError> {
    sqlx::query(
        "INSERT OR IGNORE INTO mailboxes (mailbox_id, kind, contact, created_ms, registered)
         VALUES ($1, 'contact', $2, $3, 0)",
    )
    .bind(&mailbox[..])
    .bind(contact)
    .bind(created_ms)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Seals the epoch key for the store.
pub(crate) fn seal_epoch_key(store: &Store, key: &EpochKey) -> Vec<u8> {
    store.seal("constellation", "1", &key.to_bytes()[..])
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
