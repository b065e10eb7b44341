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

use chorus_core::{LogError, RecordContext, Roster, Session, StreamHead, open_event};
use chorus_crypto::EpochKey;
use chorus_relay_api::{Id32, RecordOut};
use chorus_wire::{
    ChainLink, ContactDetails, EventKind, FirstMessage, LogEvent, RosterEntry, SentMessage,
};
use sqlx::SqliteConnection;

use crate::contacts::{contact_named_by, insert_contact, remember_handshake};
use crate::event::{Event, Message};
use crate::handle::Device;
use crate::{ClientError, Store};

/// Records read per request while folding (the largest are ~128 KiB: a page stays
/// well under the client's response bound).
pub const LOG_PAGE: u32 = 64;

/// How many times a guarded append is retried after losing a race before giving up.
pub const APPEND_ATTEMPTS: usize = 32;

/// The stream of one contact's session (sends and contact creation are guarded on it).
pub(crate) fn session_stream(contact_root: &[u8; 32]) -> Vec<u8> {
    [&b"session:"[..], &contact_root[..]].concat()
}

/// The stream that numbers prekeys (two devices must not mint the same ids).
pub(crate) const PREKEY_STREAM: &[u8] = b"prekeys";

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

/// The sessions a page of records reads or changes, by contact name: each is read once
/// and written once per page instead of once per record (a burst of sends to one
/// contact is one read and one write). `bool`: changed since read. Within a record,
/// nothing but a fatal error (store, corruption) can follow a change, and a fatal
/// error abandons the page's transaction together with this cache.
type PageSessions = std::collections::HashMap<String, (Session, bool)>;

/// The outcome of a guarded append.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Appended {
    /// In the log, and folded.
    Done,
    /// A guard failed: a sibling got there first. Nothing was appended; the caller
    /// folds (already done) and decides again.
    Conflict,
}

/// The register holding when `device` was last linked again.
pub(crate) fn relinked_register(device: &[u8; 32]) -> String {
    format!("relinked:{}", hex::encode(device))
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

/// The log chain hash at `seq`, if this device folded it (or was linked there).
async fn chain_at(conn: &mut SqliteConnection, seq: i64) -> Result<Option<[u8; 32]>, ClientError> {
    let hash: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM log_chain WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await?;
    hash.map(|h| hash32(&h)).transpose()
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
    /// Seals `events` and appends them in one atomic batch, then folds the log. Guards
    /// use the versions as folded; several events on one stream expect consecutive
    /// versions.
    pub(crate) async fn append(
        &self,
        events: Vec<Pending>,
    ) -> Result<(Appended, Vec<Event>), ClientError> {
        let keys = &self.log;
        let mut conn = self.store.pool().acquire().await?;
        let (lamport, applied): (i64, i64) =
            sqlx::query_as("SELECT lamport, applied_seq FROM constellation WHERE id = 1")
                .fetch_one(&mut *conn)
                .await?;
        // Where this device stands: every record names it (`chorus_core::chain`).
        let head = match chain_at(&mut conn, applied).await? {
            Some(hash) if applied > 0 => Some((u64::try_from(applied).unwrap_or(0), hash)),
            _ => None,
        };
        let mut streams: std::collections::HashMap<Vec<u8>, StreamHead> = Default::default();
        let mut records = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        for (i, p) in events.into_iter().enumerate() {
            let (guard, stream_prev) = match &p.guard {
                None => (None, None),
                Some((name, expected)) => {
                    let tag = keys.key.stream_tag(name);
                    let folded = match streams.get(name) {
                        Some(s) => *s,
                        None => stream_head(&mut conn, &tag).await?,
                    };
                    (Some((tag, expected.unwrap_or(folded.version))), folded.head)
                }
            };
            let event = LogEvent {
                event_id: self.random(),
                lamport: u64::try_from(lamport).unwrap_or(0) + 1 + i as u64,
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
        drop(conn);
        let mut outcome = match self.relay.append(records).await {
            Ok(_) => Appended::Done,
            Err(e) if e.code() == Some("guard_failed") => Appended::Conflict,
            Err(e) => return Err(e.into()),
        };
        let events = self.sync_log().await?;
        if outcome == Appended::Done && !self.all_folded(&ids).await? {
            // The relay acknowledged records this device's fold then refused or
            // never saw (it let a stale guard through, or hides them from us): lost,
            // so the caller re-does them on the state as folded.
            tracing::warn!("the relay acknowledged an append the log does not show in order");
            outcome = Appended::Conflict;
        }
        Ok((outcome, events))
    }

    /// Whether every one of these events is folded.
    async fn all_folded(&self, ids: &[[u8; 16]]) -> Result<bool, ClientError> {
        let mut conn = self.store.pool().acquire().await?;
        for id in ids {
            let seen: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT event_id FROM seen_events WHERE event_id = $1")
                    .bind(&id[..])
                    .fetch_optional(&mut *conn)
                    .await?;
            if seen.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads the log after the folded cursor and folds every record, in seq order.
    pub async fn sync_log(&self) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        while let Some(page) = self.sync_log_page().await? {
            events.extend(page);
        }
        Ok(events)
    }

    /// Folds one page of records; `None` when there was nothing new.
    pub(crate) async fn sync_log_page(&self) -> Result<Option<Vec<Event>>, ClientError> {
        let after: i64 = sqlx::query_scalar("SELECT applied_seq FROM constellation WHERE id = 1")
            .fetch_one(self.store.pool())
            .await?;
        let page = self.relay.read_records(after, LOG_PAGE).await?;
        if after.saturating_add(1) < page.first_seq {
            return Err(ClientError::Corrupt(format!(
                "the log was trimmed below seq {} before this device read it",
                page.first_seq
            )));
        }
        // A relay claiming more but sending nothing new would loop forever: stop.
        if !page.records.iter().any(|r| r.seq > after) {
            return Ok(None);
        }
        self.fold_page(&page.records).await.map(Some)
    }

    /// Folds a page of records in one transaction (one fsync), each record inside its
    /// own savepoint: a refused record rolls back alone and only the cursor moves past
    /// it. Records must continue the cursor: a relay skipping a seq is an error, and
    /// nothing of the page is kept.
    pub(crate) async fn fold_page(&self, records: &[RecordOut]) -> Result<Vec<Event>, ClientError> {
        let mut tx = self.store.begin().await?;
        let mut applied: i64 =
            sqlx::query_scalar("SELECT applied_seq FROM constellation WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        // Validated once per page (every signature of the chain), then kept current
        // by the page's own roster entries.
        let mut roster = load_roster(&mut tx, &self.log.log_id).await?;
        let mut sessions = PageSessions::new();
        let mut events = Vec::new();
        let mut chain = chain_at(&mut tx, applied).await?;
        for record in records {
            if record.seq <= applied {
                continue;
            }
            // Seqs come from the relay: compare without arithmetic that could overflow.
            let next = applied.checked_add(1);
            if Some(record.seq) != next {
                return Err(ClientError::Relay(crate::RelayError::BadResponse {
                    url: self.me.relay_url.clone(),
                    reason: format!(
                        "log gap: expected the seq after {applied}, got {}",
                        record.seq
                    ),
                }));
            }
            // The log chain covers every record shown, refused or not.
            let hash = self.log.record_hash(
                record.epoch,
                &record.author.0,
                record.guard.as_ref(),
                &record.nonce.0,
                &record.ciphertext.0,
            );
            let seq = u64::try_from(record.seq).unwrap_or(0);
            let next = chorus_core::chain_next(chain.as_ref(), seq, &hash);
            sqlx::query("INSERT INTO log_chain (seq, hash) VALUES ($1, $2)")
                .bind(record.seq)
                .bind(&next[..])
                .execute(&mut *tx)
                .await?;
            chain = Some(next);
            let mut one = sqlx::Acquire::begin(&mut *tx).await?;
            match self
                .apply_record(&mut one, &mut roster, &mut sessions, record, hash)
                .await
            {
                Ok(e) => {
                    one.commit().await?;
                    events.extend(e);
                }
                Err(e @ (ClientError::Store(_) | ClientError::Corrupt(_))) => return Err(e),
                Err(e) => {
                    one.rollback().await?;
                    let relay_at_fault = matches!(
                        e,
                        ClientError::Log(
                            LogError::StreamVersion { .. }
                                | LogError::StreamPredecessor
                                | LogError::Equivocation { .. }
                                | LogError::HeadAhead { .. }
                        )
                    );
                    let reason = if relay_at_fault {
                        // Loud: only a dishonest (or broken) relay shows this.
                        tracing::error!(seq = record.seq, error = %e, "the relay's log does not verify");
                        format!(
                            "log record {}: {e} — the relay {} is not keeping the log honestly",
                            record.seq, self.me.relay_url
                        )
                    } else {
                        tracing::warn!(seq = record.seq, error = %e, "log record rejected");
                        format!("log record {}: {e}", record.seq)
                    };
                    events.push(Event::Rejected { reason });
                }
            }
            applied = record.seq;
        }
        for (name, (session, changed)) in &sessions {
            if *changed {
                self.store.put_session(&mut tx, name, session).await?;
            }
        }
        sqlx::query("UPDATE constellation SET applied_seq = $1 WHERE id = 1")
            .bind(applied)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(events)
    }

    async fn apply_record(
        &self,
        tx: &mut SqliteConnection,
        roster: &mut Roster,
        sessions: &mut PageSessions,
        record: &RecordOut,
        hash: [u8; 32],
    ) -> Result<Vec<Event>, ClientError> {
        let epoch = u32::try_from(record.epoch).map_err(|_| ClientError::Rejected("bad epoch"))?;
        if epoch != self.log.epoch {
            return Err(ClientError::Rejected("log record from another epoch"));
        }
        let guard = record
            .guard
            .as_ref()
            .map(|g| (g.stream_tag.0.as_slice(), g.expected_version));
        let context = RecordContext {
            log_id: self.log.log_id.0,
            epoch,
            author: record.author.0,
            guard,
        };
        let event = open_event(
            &self.log.key,
            &context,
            &record.nonce.0,
            &record.ciphertext.0,
        )?;
        let author = chorus_crypto::DevicePublicKey::from_bytes(event.author)
            .map_err(|_| ClientError::Rejected("log record author is not a key"))?;
        if !roster.is_authorized(&author) {
            return Err(chorus_core::LogError::UnknownAuthor.into());
        }
        // Where the author stood must be where this device stands (`chorus_core::chain`).
        let claimed = match event.chain.head {
            Some((at, _)) => chain_at(&mut *tx, i64::try_from(at).unwrap_or(i64::MAX)).await?,
            None => None,
        };
        chorus_core::check_head(&event.chain, u64::try_from(record.seq).unwrap_or(0), |_| {
            claimed
        })?;
        let stream = match guard {
            Some((tag, version)) => {
                let folded = stream_head(&mut *tx, tag).await?;
                chorus_core::check_stream(folded, version, &event.chain)?;
                Some((tag, folded.advanced(hash)))
            }
            None => None,
        };
        let fresh = sqlx::query("INSERT OR IGNORE INTO seen_events (event_id) VALUES ($1)")
            .bind(&event.event_id[..])
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if fresh == 0 {
            return Err(ClientError::Rejected(
                "log record replays an event already applied",
            ));
        }
        sqlx::query("UPDATE constellation SET lamport = MAX(lamport, $1) WHERE id = 1")
            .bind(i64::try_from(event.lamport).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        if let Some((tag, next)) = stream {
            sqlx::query(
                "INSERT INTO streams (tag, version, head) VALUES ($1, $2, $3)
                 ON CONFLICT (tag) DO UPDATE SET version = excluded.version, head = excluded.head",
            )
            .bind(tag)
            .bind(next.version)
            .bind(next.head.as_ref().map(|h| &h[..]))
            .execute(&mut *tx)
            .await?;
        }
        let stamp_ms = i64::try_from(event.timestamp_ms).unwrap_or(i64::MAX);
        let stamp = chorus_core::Stamp::of(&event);
        let mut events = Vec::new();
        match event.kind {
            EventKind::Roster { entry } => {
                let decoded = RosterEntry::decode(&entry)?;
                roster.check(&decoded).map_err(|e| {
                    tracing::warn!(error = %e, "roster entry refused");
                    ClientError::Rejected("roster entry refused (signature, chain or signer)")
                })?;
                sqlx::query("INSERT INTO roster (idx, entry) VALUES ($1, $2)")
                    .bind(i64::try_from(decoded.index).unwrap_or(i64::MAX))
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?;
                // Checked above; the in-memory copy follows only once the row is written.
                roster
                    .apply(&decoded)
                    .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))?;
                // Every device hears that a device joined, and which device let it in.
                if let chorus_wire::RosterBody::DeviceAuthorized { device, name, .. } =
                    &decoded.body
                    && *device.as_bytes() != self.log.device
                {
                    let by = roster
                        .devices()
                        .iter()
                        .find(|d| *d.key.as_bytes() == event.author)
                        .map_or_else(|| "an unknown device".to_owned(), |d| d.name.clone());
                    events.push(Event::DeviceLinked {
                        name: name.clone(),
                        by,
                    });
                }
            }
            EventKind::ProfileUpdated { name } => {
                if self.lww(tx, "profile", &stamp, name.as_bytes()).await? {
                    sqlx::query("UPDATE identity SET name = $1 WHERE id = 1")
                        .bind(&name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            EventKind::RelaysUpdated { relays } => {
                self.lww(tx, "relays", &stamp, relays.join("\n").as_bytes())
                    .await?;
            }
            EventKind::PrekeysCreated {
                keys,
                invitation_mailbox,
            } => {
                for k in &keys {
                    crate::prekeys::insert_secret(&self.store, tx, k, stamp_ms).await?;
                }
                if let Some(m) = invitation_mailbox {
                    sqlx::query(
                        "INSERT OR IGNORE INTO mailboxes (mailbox_id, kind, contact, created_ms)
                         VALUES ($1, 'invitation', NULL, $2)",
                    )
                    .bind(&m[..])
                    .bind(stamp_ms)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            EventKind::ContactUpserted {
                contact,
                name,
                details,
            } => {
                // Without details: a rename (not offered yet); the alias stays.
                if let Some(details) = details
                    && let Some(added) = self
                        .fold_new_contact(
                            tx, sessions, &contact, &name, &details, record.seq, guard,
                        )
                        .await?
                {
                    events.extend(added);
                }
            }
            EventKind::Sent(sent) => events.extend(
                self.fold_sent(tx, sessions, &sent, stamp_ms, &event.author, record.seq)
                    .await?,
            ),
            EventKind::Delivered { envelope_id } => {
                sqlx::query("DELETE FROM outbox WHERE envelope_id = $1")
                    .bind(&envelope_id[..])
                    .execute(&mut *tx)
                    .await?;
            }
            EventKind::Received {
                contact,
                message,
                position,
            } => {
                let name = contact_named_by(&mut *tx, &contact).await?;
                let name = name.ok_or(ClientError::Rejected(
                    "a received message from an unknown contact",
                ))?;
                let sent_ms = i64::try_from(message.sent_ms).unwrap_or(i64::MAX);
                if !message.text.is_empty()
                    && self
                        .insert_message(
                            tx,
                            &name,
                            false,
                            &message.envelope_id,
                            &message.text,
                            sent_ms,
                            stamp_ms,
                            i64::try_from(position).unwrap_or(i64::MAX),
                        )
                        .await?
                {
                    events.push(Event::Message(crate::Message {
                        contact: name,
                        outgoing: false,
                        text: message.text,
                        sent_ms,
                        stored_ms: stamp_ms,
                    }));
                }
            }
            EventKind::Blocked { contact, blocked } => {
                self.fold_blocked(tx, &contact, blocked, &stamp).await?;
            }
            EventKind::Relinked { device } => {
                let at = stamp.timestamp_ms.to_be_bytes();
                let newer = self
                    .lww(tx, &relinked_register(&device), &stamp, &at)
                    .await?;
                let named = |key: &[u8; 32]| {
                    roster
                        .devices()
                        .iter()
                        .find(|d| d.key.as_bytes() == key)
                        .map(|d| d.name.clone())
                };
                if newer
                    && device != self.log.device
                    && let Some(name) = named(&device)
                {
                    events.push(Event::DeviceRelinked {
                        name,
                        by: named(&event.author).unwrap_or_else(|| "an unknown device".into()),
                    });
                }
            }
            EventKind::Read { contact, up_to } => {
                sqlx::query(
                    "UPDATE contacts SET read_up_to = MAX(read_up_to, $1) WHERE root_key = $2",
                )
                .bind(i64::try_from(up_to).unwrap_or(i64::MAX))
                .bind(&contact[..])
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(events)
    }

    /// Last writer wins by `(lamport, timestamp, author, event id)`. Returns whether
    /// this event's value is now the register's.
    pub(crate) async fn lww(
        &self,
        tx: &mut SqliteConnection,
        name: &str,
        stamp: &chorus_core::Stamp,
        value: &[u8],
    ) -> Result<bool, ClientError> {
        let current: Option<(i64, i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT lamport, timestamp_ms, author, event_id FROM registers WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((lamport, ts, author, event_id)) = current {
            let held = chorus_core::Stamp {
                lamport: u64::try_from(lamport).unwrap_or(0),
                timestamp_ms: u64::try_from(ts).unwrap_or(0),
                author: author.try_into().unwrap_or([0; 32]),
                event_id: event_id.try_into().unwrap_or([0; 16]),
            };
            if held >= *stamp {
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO registers (name, lamport, timestamp_ms, author, event_id, value)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET lamport = excluded.lamport,
               timestamp_ms = excluded.timestamp_ms, author = excluded.author,
               event_id = excluded.event_id, value = excluded.value",
        )
        .bind(name)
        .bind(i64::try_from(stamp.lamport).unwrap_or(i64::MAX))
        .bind(i64::try_from(stamp.timestamp_ms).unwrap_or(i64::MAX))
        .bind(&stamp.author[..])
        .bind(&stamp.event_id[..])
        .bind(value)
        .execute(&mut *tx)
        .await?;
        Ok(true)
    }

    /// A contact's creation. The first writer wins (creation is guarded on the
    /// session stream at version 0); a later creation of the same identity changes
    /// nothing. Aliases are made unique in log order, so every device picks the same.
    #[allow(clippy::too_many_arguments)]
    async fn fold_new_contact(
        &self,
        tx: &mut SqliteConnection,
        sessions: &mut PageSessions,
        contact: &[u8; 32],
        name: &str,
        d: &ContactDetails,
        seq: i64,
        guard: Option<(&[u8], i64)>,
    ) -> Result<Option<Vec<Event>>, ClientError> {
        let known = contact_named_by(&mut *tx, contact).await?;
        if let Some(known) = known {
            // A second handshake is settled on the contact's session stream past its
            // creation; anything else for a known contact is a creation that lost.
            return match guard {
                Some((tag, version))
                    if version > 0 && tag == self.log.key.stream_tag(&session_stream(contact)) =>
                {
                    self.fold_second_handshake(tx, sessions, &known, d, seq)
                        .await
                        .map(Some)
                }
                _ => Ok(None),
            };
        }
        let session = Session::restore(d.session.as_bytes(), 0)?;
        remember_handshake(tx, contact, &session).await?;
        let alias = self.free_alias(tx, name).await?;
        let added_ms = i64::try_from(d.added_ms).unwrap_or(i64::MAX);
        // The invitation involved: one of ours (a stranger answered it) or theirs (we
        // accepted it).
        let ours: Option<i64> = match &d.invitation {
            Some(m) => {
                sqlx::query_scalar("SELECT 1 FROM mailboxes WHERE mailbox_id = $1")
                    .bind(&m[..])
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        let their_invitation = match ours {
            Some(_) => None,
            None => d.invitation.as_ref().map(|m| &m[..]),
        };
        insert_contact(
            tx,
            &alias,
            &d.identity,
            &d.relay_url,
            &d.send_mailbox,
            &d.recv_mailbox,
            their_invitation,
            added_ms,
        )
        .await?;
        if let (Some(m), Some(_)) = (&d.invitation, ours) {
            sqlx::query("UPDATE mailboxes SET contact = $1 WHERE mailbox_id = $2")
                .bind(&alias)
                .bind(&m[..])
                .execute(&mut *tx)
                .await?;
        }
        contact_mailbox(tx, &d.recv_mailbox, &alias, added_ms).await?;
        sessions.insert(alias.clone(), (session, true));
        crate::prekeys::delete_consumed_ids(tx, &d.consumed_prekeys).await?;
        // A device that held this identity's message request: it ends here.
        self.settle_request(tx, contact, &alias, added_ms).await?;
        let mut events = vec![Event::ContactAdded {
            contact: alias.clone(),
        }];
        if let Some(first) = &d.first {
            sqlx::query("UPDATE contacts SET answered = 1 WHERE name = $1")
                .bind(&alias)
                .execute(&mut *tx)
                .await?;
            events.extend(self.fold_first_message(tx, &alias, first, added_ms).await?);
        }
        tracing::debug!(seq, contact = %alias, "contact folded");
        Ok(Some(events))
    }

    /// The message that came with a handshake, into the history.
    async fn fold_first_message(
        &self,
        tx: &mut SqliteConnection,
        alias: &str,
        first: &FirstMessage,
        stored_ms: i64,
    ) -> Result<Vec<Event>, ClientError> {
        let sent_ms = i64::try_from(first.sent_ms).unwrap_or(i64::MAX);
        if first.text.is_empty()
            || !self
                .insert_message(
                    tx,
                    alias,
                    false,
                    &first.envelope_id,
                    &first.text,
                    sent_ms,
                    stored_ms,
                    0,
                )
                .await?
        {
            return Ok(Vec::new());
        }
        Ok(vec![Event::Message(Message {
            contact: alias.to_owned(),
            outgoing: false,
            text: first.text.clone(),
            sent_ms,
            stored_ms,
        })])
    }

    /// A second handshake with a known contact, settled by the device that read it
    /// (`chorus_core::handshakes`): its session replaces the current one, which is
    /// then only read until it drains, or (`read_only`) it is only read itself. The
    /// log seq names the read-only session, so every device keeps the same ones.
    async fn fold_second_handshake(
        &self,
        tx: &mut SqliteConnection,
        sessions: &mut PageSessions,
        alias: &str,
        d: &ContactDetails,
        seq: i64,
    ) -> Result<Vec<Event>, ClientError> {
        let new = Session::restore(d.session.as_bytes(), 0)?;
        let root = *d.identity.root.as_bytes();
        remember_handshake(tx, &root, &new).await?;
        let since_ms = i64::try_from(d.added_ms).unwrap_or(i64::MAX);
        let mut events = Vec::new();
        if d.read_only {
            self.store
                .put_stale_session(tx, alias, seq, since_ms, &new)
                .await?;
        } else {
            let old = match sessions.remove(alias) {
                Some((session, _)) => Some(session),
                None => self.store.get_session(tx, alias).await?,
            };
            if let Some(old) = old {
                // Contacts from before this memory existed: their current session's
                // handshake is remembered as it is retired.
                remember_handshake(tx, &root, &old).await?;
                self.store
                    .put_stale_session(tx, alias, seq, since_ms, &old)
                    .await?;
            }
            sessions.insert(alias.to_owned(), (new, true));
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
            .bind(alias)
            .execute(&mut *tx)
            .await?;
            // The old mailbox stays: what is on its way there is still read.
            contact_mailbox(tx, &d.recv_mailbox, alias, since_ms).await?;
            events.push(Event::SessionReset {
                contact: alias.to_owned(),
            });
        }
        if let (Some(m), Some(_)) = (&d.invitation, &d.first) {
            // One of ours that this handshake used: spent now.
            sqlx::query(
                "UPDATE mailboxes SET contact = $1 WHERE mailbox_id = $2 AND kind = 'invitation'",
            )
            .bind(alias)
            .bind(&m[..])
            .execute(&mut *tx)
            .await?;
        }
        crate::prekeys::delete_consumed_ids(tx, &d.consumed_prekeys).await?;
        if let Some(first) = &d.first {
            events.extend(self.fold_first_message(tx, alias, first, since_ms).await?);
        }
        tracing::debug!(seq, contact = %alias, read_only = d.read_only, "second handshake folded");
        Ok(events)
    }

    /// A sent message: the sibling's ratchet delta, the transcript, and the envelope in
    /// the outbox until a `Delivered` for it is folded.
    async fn fold_sent(
        &self,
        tx: &mut SqliteConnection,
        sessions: &mut PageSessions,
        sent: &SentMessage,
        stamp_ms: i64,
        author: &[u8; 32],
        seq: i64,
    ) -> Result<Vec<Event>, ClientError> {
        let name = contact_named_by(&mut *tx, &sent.contact).await?;
        let name = name.ok_or(ClientError::Rejected(
            "a sent message to an unknown contact",
        ))?;
        let (session, changed) = match sessions.entry(name.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let session = self
                    .store
                    .get_session(tx, &name)
                    .await?
                    .ok_or_else(|| ClientError::UnknownContact(name.clone()))?;
                v.insert((session, false))
            }
        };
        // Changes the session only when it succeeds (see `PageSessions`).
        if session.apply_send_delta(sent.ratchet_delta.as_bytes())? {
            *changed = true;
        }
        // Our first envelope to their invitation is our claim on its mailbox.
        sqlx::query(
            "UPDATE contacts SET invitation_claim = $1
             WHERE name = $2 AND invitation = $3 AND invitation_claim IS NULL",
        )
        .bind(&sent.envelope_id[..])
        .bind(&name)
        .bind(&sent.mailbox[..])
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM pending_sends WHERE envelope_id = $1")
            .bind(&sent.envelope_id[..])
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO outbox (envelope_id, contact, relay_url, mailbox_id, envelope, created_ms, author)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&sent.envelope_id[..])
        .bind(&name)
        .bind(&sent.relay_url)
        .bind(&sent.mailbox[..])
        .bind(&sent.envelope)
        .bind(stamp_ms)
        .bind(&author[..])
        .execute(&mut *tx)
        .await?;
        let sent_ms = i64::try_from(sent.sent_ms).unwrap_or(i64::MAX);
        let mut events = Vec::new();
        if !sent.text.is_empty()
            && self
                .insert_message(
                    tx,
                    &name,
                    true,
                    &sent.envelope_id,
                    &sent.text,
                    sent_ms,
                    stamp_ms,
                    seq,
                )
                .await?
            && *author != self.log.device
        {
            events.push(Event::Message(Message {
                contact: name,
                outgoing: true,
                text: sent.text.clone(),
                sent_ms,
                stored_ms: stamp_ms,
            }));
        }
        Ok(events)
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
