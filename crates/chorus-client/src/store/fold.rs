//! Persisting what the core's fold decided for a page (`chorus_core::Effect`), batched
//! by table: the only code that turns the fold's decisions into rows. The fold itself
//! (what a record means, whether it is refused) lives in `chorus-core`; the log driver
//! (`log.rs`) reads pages and calls this inside its transaction.

use std::collections::{BTreeMap, HashSet};

use chorus_core::{
    Constellation, Effect, Folded, HistoryEntry, LogError, Outcome, Sessions, StreamHead,
};
use chorus_wire::SentMessage;
use sqlx::SqliteConnection;

use super::contacts::insert_contact;
use super::history::{HistoryRow, insert_and_tell};
use super::{Store, log_state, row};
use crate::ClientError;
use crate::event::{Event, Message};

/// Who folded: effects are persisted relative to this device.
pub(crate) struct Folder<'a> {
    /// This device's key (its own sends are not news to it).
    pub(crate) device: [u8; 32],
    /// This device's X25519 key (a shared root is sealed to it).
    pub(crate) dh: &'a chorus_crypto::DeviceDhSecret,
    /// The identity's home relay (named when its log does not verify).
    pub(crate) relay_url: &'a str,
    /// The key a rotation folded in this part sealed to this device.
    pub(crate) epoch_key: Option<&'a chorus_crypto::EpochKey>,
}

impl Store {
    /// Writes what the fold decided for a page, batched by table, and says what the
    /// person should hear.
    pub(crate) async fn persist_fold(
        &self,
        tx: &mut SqliteConnection,
        me: &Folder<'_>,
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
                        self.persist_one(tx, (me, state), &mut page, &mut events, f.seq, effect)
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
                            f.seq, me.relay_url
                        )
                    } else {
                        tracing::warn!(seq = f.seq, error = %e, "log record rejected");
                        format!("log record {}: {e}", f.seq)
                    };
                    events.push(Some(Event::Rejected { reason }));
                }
            }
        }
        page.flush(tx, &mut events).await?;
        for (root, session) in sessions.changed() {
            if let Some(c) = state.contact(root) {
                self.put_session(tx, &c.alias, session).await?;
            }
        }
        log_state::write_position(
            tx,
            &page.chain,
            &page.seen,
            &page.streams,
            page.lamport,
            state,
        )
        .await?;
        Ok(events.into_iter().flatten().collect())
    }

    /// Persists one effect (the batchable ones into `page`).
    async fn persist_one(
        &self,
        tx: &mut SqliteConnection,
        (me, state): (&Folder<'_>, &Constellation),
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
            Effect::EpochRotated(r) => {
                let key = me
                    .epoch_key
                    .ok_or_else(|| ClientError::Corrupt("the rotated epoch key".into()))?;
                // The old epoch's streams are gone, including any this page advanced.
                page.streams.clear();
                log_state::start_epoch(tx, self, r.epoch, r.revoked, key).await?;
            }
            Effect::RosterEntry { index, entry } => {
                sqlx::query("INSERT INTO roster (idx, entry) VALUES ($1, $2)")
                    .bind(log_state::signed(index))
                    .bind(entry)
                    .execute(&mut *tx)
                    .await?;
            }
            Effect::LevelChanged { primary } => {
                // Moving to primary-root: every device but the primary deletes its root.
                if primary.is_some_and(|p| p != me.device) {
                    self.set_root(tx, None).await?;
                }
                events.push(Some(Event::SecurityChanged {
                    primary_root: primary.is_some(),
                    this_device_holds_root: primary.is_none_or(|p| p == me.device),
                }));
            }
            Effect::RootShared { keys } => {
                match chorus_core::open_shared_root(state.roster(), &me.device, me.dh, &keys) {
                    Some(root) => self.set_root(tx, Some(root)).await?,
                    // A box missing or wrong leaves this device without the root, as
                    // before: the record came from a sibling (or the relay) at fault.
                    None => events.push(Some(Event::Rejected {
                        reason: format!(
                            "log record {seq}: shares a root key this device cannot open or that is not the identity's"
                        ),
                    })),
                }
            }
            Effect::IdentityShared { keys } => {
                let roster = state.roster();
                match (
                    chorus_core::open_shared_identity(roster, &me.device, me.dh, &keys),
                    roster.identity(),
                ) {
                    (Some(rolled), Some(identity)) => {
                        let holds_root = rolled.root.is_some();
                        self.set_rolled_identity(tx, rolled, identity).await?;
                        events.push(Some(Event::IdentityRolled {
                            fingerprint: chorus_crypto::Fingerprint::of(&identity.root).digits(),
                            this_device_holds_root: holds_root,
                        }));
                    }
                    // A box missing or wrong: the record came from a sibling (or the
                    // relay) at fault; this device keeps the identity it had.
                    _ => events.push(Some(Event::Rejected {
                        reason: format!(
                            "log record {seq}: shares a rolled identity this device cannot open or that is not the roll's"
                        ),
                    })),
                }
            }
            Effect::DeviceAuthorized { device, name, by } => {
                // Every device hears that a device joined, and which device let it in.
                if device != me.device {
                    events.push(Some(Event::DeviceLinked { name, by }));
                }
            }
            Effect::DeviceRevoked { device, name, by } => {
                events.push(Some(Event::DeviceRevoked {
                    name,
                    by,
                    this_device: device == me.device,
                }));
            }
            Effect::DeviceRelinked { device, name, by } => {
                if device != me.device {
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
                    super::prekeys::insert_secret(self, tx, k, at_ms).await?;
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
                super::prekeys::delete_consumed_ids(tx, &ids).await?;
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
                self.put_stale_session(
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
                let tell = !(entry.outgoing && entry.author == me.device);
                page.message(self, events, entry, tell);
            }
            Effect::Sent {
                alias,
                sent,
                author,
                at_ms,
            } => page.sent(alias, *sent, author, at_ms),
            Effect::Delivered { envelope_id } => page.delivered(envelope_id),
            Effect::ForwardRequested { alias, message, .. } => {
                // The history rows batched so far may hold its send.
                page.flush(tx, events).await?;
                self.forward_requested(tx, &alias, &message).await?;
            }
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
            Effect::MailboxReplaced {
                alias,
                mailbox,
                at_ms,
            } => {
                // Read from now on (the old one too, for what is on its way); our hello
                // naming it goes with every message until the contact writes there.
                contact_mailbox(tx, &mailbox, &alias, log_state::signed(at_ms)).await?;
                sqlx::query(
                    "UPDATE contacts SET recv_mailbox = $1, hello_acked = 0 WHERE name = $2",
                )
                .bind(&mailbox[..])
                .bind(&alias)
                .execute(&mut *tx)
                .await?;
            }
            Effect::ContactRemoved { root, alias } => {
                // Rows written under the alias in this page go too.
                page.flush(tx, events).await?;
                self.remove_contact(tx, &root, &alias).await?;
                events.push(Some(Event::ContactRemoved { contact: alias }));
            }
            Effect::Renamed { from, to } => {
                // Rows written under the old alias must be there to be renamed.
                page.flush(tx, events).await?;
                self.rename_contact(tx, &from, &to).await?;
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
        store: &Store,
        events: &mut Vec<Option<Event>>,
        entry: HistoryEntry,
        tell: bool,
    ) {
        let (sent_ms, stored_ms) = (
            log_state::signed(entry.sent_ms),
            log_state::signed(entry.stored_ms),
        );
        let sealed = store.seal(
            "message",
            &row::message(&entry.envelope_id, &entry.alias, entry.outgoing),
            &super::body::encode(&entry.text, entry.file.as_ref()),
        );
        let event = tell.then(|| {
            events.push(Some(Event::Message(Message {
                contact: entry.alias.clone(),
                outgoing: entry.outgoing,
                text: entry.text,
                sent_ms,
                stored_ms,
                read: entry.read,
                pending: false,
                delivery: None,
                file: entry
                    .file
                    .as_ref()
                    .map(|f| crate::FileInfo::of(&entry.envelope_id, f)),
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
        tx: &mut SqliteConnection,
        events: &mut [Option<Event>],
    ) -> Result<(), ClientError> {
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
        // A send ends its pending row: this device's own (written before the append),
        // or, under `leader` and `primary`, any device's forwarded message.
        let sent: Vec<[u8; 16]> = done
            .iter()
            .chain(&waiting)
            .map(|o| o.sent.envelope_id)
            .collect();
        log_state::delete_envelopes(tx, "pending_sends", &sent).await?;
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
        // A send delivered in the page it was sent in never had an outbox row.
        let sent_here: HashSet<[u8; 16]> = done.iter().map(|o| o.sent.envelope_id).collect();
        let delivered: Vec<[u8; 16]> = delivered
            .into_iter()
            .filter(|id| !sent_here.contains(id))
            .collect();
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
