//! Receiving: folding the log, reading the mailboxes and deciding each envelope
//! (a contact's message, a first contact, a forgery or a replay).

use chorus_core::route::{
    Arrived, Delivery, Failure, MailboxKind, Next, Refusal, Route, after_failure, delivery, route,
};
use chorus_core::{EncryptedMessage, FirstContact, MessageKind, Proposal, handshakes, respond};
use chorus_relay_api::{EnvelopeOut, Id32};
use chorus_wire::{Envelope, FirstMessage, InitialMessage, Payload};
use sqlx::SqliteConnection;

use super::{Device, RECEIVED_PER_APPEND, SYNC_PAGE, id32};
use crate::log::Pending;
use crate::prekeys;
use crate::store::contacts::{
    ContactRow, contact_named_by, handshake_seen, mark_answered, pinned_root, set_contact_route,
};
use crate::store::history::{HistoryRow, insert_and_tell};
use crate::store::log_state::session_stream_version;
use crate::store::mailboxes::{advance_cursor, mailbox as our_mailbox};
use crate::store::prekeys::LoadedPrekeys;
use crate::store::{body, row};
use crate::{ClientError, Event, FileInfo, Message};
use chorus_relay_api::limits::MAX_BATCH_MAILBOXES as MAILBOXES_PER_READ;

impl Device {
    /// Every mailbox of ours with how far it was read, in batches of the most one
    /// read takes.
    /// Under `primary` a sibling leaves the contacts' mailboxes to the primary.
    async fn cursor_chunks(&self) -> Result<Vec<Vec<(Id32, i64)>>, ClientError> {
        let cursors = self.store.cursors(self.reads_contacts().await?).await?;
        cursors
            .chunks(MAILBOXES_PER_READ)
            .map(|chunk| chunk.iter().map(|(m, a)| Ok((id32(m)?, *a))).collect())
            .collect()
    }

    /// Tells the relay how far this device has read each mailbox: a batch read from
    /// its cursors, whose answer (normally empty) the push channel and the next sync
    /// deliver anyway. `watch` runs it with every heartbeat: pushes move the cursors
    /// without a read, and the relay sweeps an expired envelope only once every device
    /// has read past it.
    pub(super) async fn report_cursors(&self) -> Result<(), ClientError> {
        for chunk in self.cursor_chunks().await? {
            self.relay.read_mailboxes(&chunk, 1).await?;
        }
        Ok(())
    }

    /// Folds the log, reads every mailbox to its end and processes what arrived, then
    /// posts the outbox.
    pub async fn sync(&self) -> Result<Vec<Event>, ClientError> {
        let _ = self.relay.heartbeat().await;
        // A link interrupted while importing the history resumes at the next chunk.
        if self.store.history_import_left().await? > 0
            && let Err(e) = self.import_history(|_, _| {}).await
        {
            tracing::warn!(error = %e, "could not import the rest of the history yet");
        }
        let mut events = self.sync_log().await?;
        // A revocation whose device stopped before renewing: any device finishes it.
        // It stays due until it lands, so a failure here never keeps this device from
        // receiving; the next sync tries again.
        if let Err(e) = self.renew_if_due().await {
            tracing::warn!(error = %e, "could not renew prekeys and mailboxes after a revocation");
        }
        // A roll whose device stopped before showing the relay (or, holding the root,
        // before moving the directory): any device finishes it.
        if let Err(e) = self.finish_roll_if_due().await {
            tracing::warn!(error = %e, "could not finish the identity roll yet");
        }
        // After a rotation the recovery state moves to the new key; until it has, a
        // recovering device could not read past the rotation. Tried again every sync.
        if let Err(e) = self.refresh_recovery_if_due().await {
            tracing::warn!(error = %e, "could not write the recovery state");
        }
        // `per-device`: this device's bundle and the identity's list (a device linked
        // since is listed once it published).
        if let Err(e) = self.publish_per_device().await {
            tracing::warn!(error = %e, "could not publish this device's per-device bundle");
        }
        // Receiving first: nothing queued for others can hold up what arrived.
        let mut received = self.receive_all().await?;
        self.follow_renames(&mut received).await;
        self.adopt_timers(&received).await;
        events.extend(received);
        self.flush_outbox().await?;
        self.expire_messages().await?;
        // Spent session snapshots out of the files (best effort).
        let _ = self.store.compact().await;
        Ok(events)
    }

    /// Whether this device reads the contacts' mailboxes (all but a primary's
    /// siblings: `chorus_core::Constellation::reads_contacts`).
    pub(super) async fn reads_contacts(&self) -> Result<bool, ClientError> {
        let me = self.log.keys.device;
        self.log.with_state(|s| s.reads_contacts(&me)).await
    }

    /// `primary`: writes every message this device decrypted since the last fan-out to
    /// the log (`Received`, a few per append), for the siblings that do not read the
    /// contacts' mailboxes. The mark moves only after the append, so a crash in between
    /// logs them again (every device keeps one history row per envelope id). A device
    /// that is not the primary only moves the mark, so that becoming the primary later
    /// does not log its whole history.
    pub(super) async fn fan_out(&self) -> Result<(), ClientError> {
        let me = self.log.keys.device;
        if !self.log.with_state(|s| s.fans_out(&me)).await? {
            return self.store.fanned_out(None).await;
        }
        loop {
            let rows = self.store.unfanned(RECEIVED_PER_APPEND as i64).await?;
            let Some(last) = rows.last().map(|(id, ..)| *id) else {
                return Ok(());
            };
            let n = rows.len();
            let events = rows
                .into_iter()
                .map(|(_, contact, message, position)| {
                    Pending::free(chorus_wire::EventKind::Received {
                        contact,
                        message,
                        position,
                    })
                })
                .collect();
            self.append(events).await?;
            self.store.fanned_out(Some(last)).await?;
            if n < RECEIVED_PER_APPEND {
                return Ok(());
            }
        }
    }

    /// Reads every mailbox of the identity to its end and takes what arrived.
    pub(super) async fn receive_all(&self) -> Result<Vec<Event>, ClientError> {
        let events = self.read_mailboxes().await?;
        self.fan_out().await?;
        Ok(events)
    }

    /// Reads every mailbox of the identity to its end and takes what arrived, without
    /// the fan-out (what a primary did before a crash that came before its fan-out).
    pub(crate) async fn read_mailboxes(&self) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        loop {
            let (mut more, mut progressed) = (false, false);
            for chunk in self.cursor_chunks().await? {
                let pages = self.relay.read_mailboxes(&chunk, SYNC_PAGE).await?;
                for page in pages.results {
                    more |= page.more;
                    progressed |= !page.envelopes.is_empty();
                    events.extend(self.process_page(page.mailbox_id, &page.envelopes).await?);
                }
            }
            // `more` with empty pages would loop forever: the relay is not trusted to end it.
            if !(more && progressed) {
                return Ok(events);
            }
        }
    }

    /// Processes a page of envelopes from one mailbox: those that are plain messages on
    /// a known session are received together in one transaction (each inside its own
    /// savepoint, the cursor moved once), so a backlog costs a commit per page, not per
    /// message. The first envelope that needs more (a new contact, the log folded
    /// first, a refusal) ends the batch and goes through [`Self::process`] alone.
    pub(super) async fn process_page(
        &self,
        mailbox: Id32,
        envelopes: &[EnvelopeOut],
    ) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        // `per-device`: copies are read against the contact's newest device list,
        // fetched once per page before any transaction (a device it linked is known, a
        // device it removed is read no more).
        let copies = envelopes
            .iter()
            .any(|e| matches!(Envelope::decode(&e.payload.0), Ok(Envelope::Copy { .. })));
        if copies {
            let mut conn = self.store.pool().acquire().await?;
            let owner = our_mailbox(&mut conn, &mailbox.0).await?;
            drop(conn);
            if let Some((_, Some(name), _)) = owner {
                match self.refresh_device_list(&name).await {
                    Ok(()) => {}
                    // The contact's relay is down for now: read these copies when it
                    // is back. Read against the list held, a first copy from a device
                    // linked since would be refused for good.
                    Err(ClientError::Relay(e)) if e.retryable() => {
                        tracing::debug!(error = %e, "the contact's device list is out of reach; reading its copies later");
                        return Ok(events);
                    }
                    // A list that must not replace the one held (older, or a second
                    // one under a serial): read against the one held.
                    Err(e) => tracing::warn!(error = %e, "refusing the contact's device list"),
                }
            }
        }
        let mut rest = envelopes;
        while let Some(first) = rest.first() {
            let (taken, batch) = self.receive_batch(mailbox, rest).await?;
            events.extend(batch);
            if taken == 0 {
                events.extend(self.process(mailbox, first).await?);
                rest = &rest[1..];
            } else {
                rest = &rest[taken..];
            }
        }
        Ok(events)
    }

    /// Receives envelopes from the front of `envelopes` in one transaction while each
    /// is a plain message; returns how many were taken (their cursor committed).
    pub(super) async fn receive_batch(
        &self,
        mailbox: Id32,
        envelopes: &[EnvelopeOut],
    ) -> Result<(usize, Vec<Event>), ClientError> {
        let mut tx = self.store.begin().await?;
        let Some((kind, contact, mut after)) = our_mailbox(&mut tx, &mailbox.0).await? else {
            // Not ours (any more): nothing to do for any of them.
            return Ok((envelopes.len(), Vec::new()));
        };
        if let ("contact", Some(name)) = (kind.as_str(), &contact) {
            return self
                .receive_messages(tx, mailbox, name, after, envelopes)
                .await;
        }
        let (mut taken, mut events) = (0, Vec::new());
        for envelope in envelopes {
            if envelope.seq <= after {
                taken += 1;
                continue;
            }
            let mut one = sqlx::Acquire::begin(&mut *tx).await?;
            match self
                .receive(&mut one, &mailbox, &kind, contact.clone(), envelope)
                .await
            {
                Ok(Received::Done(e)) => {
                    one.commit().await?;
                    events.extend(e);
                    after = envelope.seq;
                    taken += 1;
                }
                Err(e @ (ClientError::Store(_) | ClientError::Corrupt(_))) => return Err(e),
                // Anything else is settled one envelope at a time.
                Ok(Received::NewContact(_)) | Err(_) => {
                    one.rollback().await?;
                    break;
                }
            }
        }
        if taken > 0 {
            advance_cursor(&mut tx, &mailbox.0, after).await?;
            tx.commit().await?;
        }
        Ok((taken, events))
    }

    /// The common case of a backlog: ratchet messages in a contact's mailbox. The
    /// session and the contact are read once, the messages decrypted in memory, and the
    /// history, the session, the contact's flags and the cursor written once. An
    /// envelope this path does not take as it is — not a ratchet message, not for the
    /// current session, carrying a hello, or not a valid payload — ends the batch with
    /// the session as it was before it (restored from the snapshot taken before
    /// decrypting), and goes through [`Self::process`] alone.
    pub(super) async fn receive_messages(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        mailbox: Id32,
        name: &str,
        mut after: i64,
        envelopes: &[EnvelopeOut],
    ) -> Result<(usize, Vec<Event>), ClientError> {
        let Some(mut session) = self.store.get_session(&mut tx, name).await? else {
            return Ok((0, Vec::new()));
        };
        let Some(row) = self.store.contact_row(&mut *tx, name).await? else {
            return Ok((0, Vec::new()));
        };
        // A message saying another display name, or a later timer, goes through
        // `process` (`take_name`, `take_timer`).
        let their_name = their_name(&mut tx, name).await?;
        let their_timer = super::timer::their_timer(&mut tx, name).await?;
        // A blocked contact's messages are read (the session moves on) and dropped.
        let shown = delivery(self.is_blocked(&mut tx, &row.root).await?) == Delivery::Show;
        let now = self.now();
        let (mut taken, mut events, mut history) = (0, Vec::new(), Vec::new());
        for envelope in envelopes {
            if envelope.seq <= after {
                taken += 1;
                continue;
            }
            let Ok(Envelope::Ratchet(bytes)) = Envelope::decode(&envelope.payload.0) else {
                break;
            };
            let (before, known) = (session.snapshot(), session.generation());
            let message = EncryptedMessage {
                kind: MessageKind::Ratchet,
                bytes,
            };
            let Ok(plaintext) = session.decrypt(&message) else {
                break;
            };
            let payload = match Payload::decode(&plaintext) {
                Ok(p)
                    if p.hello.is_none()
                        && p.rolls.is_empty()
                        && p.roll_seen.is_none()
                        && p.name
                            .as_deref()
                            .is_none_or(|n| Some(n) == their_name.as_deref())
                        && p.timer.is_none_or(|t| Some(t) == their_timer) =>
                {
                    p
                }
                _ => {
                    session = chorus_core::Session::restore(&before, known)?;
                    break;
                }
            };
            taken += 1;
            after = envelope.seq;
            if (payload.text.is_empty() && payload.file.is_none()) || !shown {
                continue;
            }
            let sent_ms = i64::try_from(payload.sent_ms).unwrap_or(i64::MAX);
            events.push(Some(Event::Message(Message {
                contact: name.to_owned(),
                outgoing: false,
                text: payload.text.clone(),
                sent_ms,
                stored_ms: now,
                read: sent_ms <= row.read_up_to,
                pending: false,
                delivery: None,
                file: payload
                    .file
                    .as_ref()
                    .map(|f| FileInfo::of(&envelope.envelope_id.0, f)),
            })));
            history.push(HistoryRow {
                alias: name.to_owned(),
                outgoing: false,
                envelope_id: envelope.envelope_id.0,
                sealed: self.store.seal(
                    "message",
                    &row::message(&envelope.envelope_id.0, name, false),
                    &body::encode(&payload.text, payload.file.as_ref()),
                ),
                sent_ms,
                stored_ms: now,
                position: envelope.seq,
                event: Some(events.len() - 1),
            });
        }
        if taken == 0 {
            return Ok((0, Vec::new()));
        }
        insert_and_tell(&mut tx, &history, &mut events).await?;
        self.store.put_session(&mut tx, name, &session).await?;
        let acked = row.hello_acked || row.recv_mailbox == mailbox.0;
        mark_answered(&mut tx, name, acked).await?;
        advance_cursor(&mut tx, &mailbox.0, after).await?;
        tx.commit().await?;
        Ok((taken, events.into_iter().flatten().collect()))
    }

    /// Processes one envelope from one of our mailboxes, exactly once: the decrypted
    /// result, the session and the cursor are committed together, and an envelope at
    /// or below the cursor is skipped. A stranger's first message becomes a contact
    /// through the log (guarded, so when several devices read it at once exactly one
    /// creation and one hello reply win). A reply built on a ratchet key from a
    /// sibling's send this device has not folded yet is retried once after folding the
    /// log.
    pub async fn process(
        &self,
        mailbox: Id32,
        envelope: &EnvelopeOut,
    ) -> Result<Vec<Event>, ClientError> {
        let mut folded_log = false;
        loop {
            let mut tx = self.store.begin().await?;
            let Some((kind, contact, after)) = our_mailbox(&mut tx, &mailbox.0).await? else {
                return Ok(Vec::new());
            };
            if envelope.seq <= after {
                return Ok(Vec::new());
            }
            let result = match self
                .receive(&mut tx, &mailbox, &kind, contact, envelope)
                .await
            {
                Ok(Received::Done(events)) => Ok(events),
                Ok(Received::NewContact(proposal)) => {
                    drop(tx);
                    // Whoever wins, the contact (with this first message) is folded now.
                    let appended = self.append(proposal).await.map(|(_, events)| events);
                    tx = self.store.begin().await?;
                    appended
                }
                Err(e) => Err(e),
            };
            // What follows a failure is the core's decision; this only carries it out.
            let events = match result {
                Ok(events) => events,
                Err(e) => match after_failure(failure(&e), folded_log) {
                    Next::FoldAndRetry => {
                        drop(tx);
                        self.sync_log().await?;
                        folded_log = true;
                        continue;
                    }
                    Next::Stop => return Err(e),
                    // Roll back whatever was started, then move the cursor alone.
                    Next::Skip => {
                        drop(tx);
                        tx = self.store.begin().await?;
                        Vec::new()
                    }
                    Next::Reject => {
                        drop(tx);
                        tx = self.store.begin().await?;
                        rejected(&e)
                    }
                },
            };
            advance_cursor(&mut tx, &mailbox.0, envelope.seq).await?;
            tx.commit().await?;
            if events
                .iter()
                .any(|e| matches!(e, Event::ContactAdded { .. } | Event::SessionReset { .. }))
            {
                self.flush_outbox().await?;
            }
            return Ok(events);
        }
    }

    async fn receive(
        &self,
        tx: &mut SqliteConnection,
        mailbox: &Id32,
        kind: &str,
        contact: Option<String>,
        envelope: &EnvelopeOut,
    ) -> Result<Received, ClientError> {
        let now = self.now();
        let message = match Envelope::decode(&envelope.payload.0)? {
            Envelope::Copy {
                sender_device,
                initial,
                message,
            } => {
                let (Some(name), "contact") = (contact, kind) else {
                    return Err(ClientError::Rejected(
                        "a per-device copy outside a contact's mailbox",
                    ));
                };
                let events = self
                    .receive_copy(
                        tx,
                        mailbox,
                        &name,
                        sender_device,
                        initial,
                        message,
                        envelope,
                    )
                    .await?;
                return Ok(Received::Done(events));
            }
            Envelope::Initial(bytes) => EncryptedMessage {
                kind: MessageKind::Initial,
                bytes,
            },
            Envelope::Ratchet(bytes) => EncryptedMessage {
                kind: MessageKind::Ratchet,
                bytes,
            },
        };
        let kind = MailboxKind::parse(kind)
            .ok_or_else(|| ClientError::Corrupt(format!("mailbox kind {kind:?}")))?;
        // The facts the core decides on, read in this transaction. A first message's
        // sender is claimed, not yet authenticated: enough to drop, never to accept.
        let (claimed, known) = match &message.kind {
            MessageKind::Initial => {
                let root = *InitialMessage::decode(&message.bytes)?
                    .sender
                    .root
                    .as_bytes();
                let known = contact_named_by(&mut *tx, &root).await?;
                (Some((root, self.is_blocked(tx, &root).await?)), known)
            }
            MessageKind::Ratchet => (None, None),
        };
        let arrived = match claimed {
            Some((_, blocked)) => Arrived::Initial {
                blocked,
                known: known.as_deref(),
            },
            None => Arrived::Ratchet,
        };
        let name = match (route(kind, contact.as_deref(), arrived), claimed) {
            (Route::Session(name), _) => name,
            (Route::Refused(Refusal::OwnerMissing), _) => {
                return Err(ClientError::Corrupt("mailbox owner".into()));
            }
            (Route::Refused(refusal), _) => return Err(ClientError::Refused(refusal)),
            (Route::Request, Some((root, _))) => {
                // A stranger: held as a message request on this device, nothing more.
                let events = self
                    .hold_request(tx, &root, &message, envelope, now)
                    .await?;
                return Ok(Received::Done(events));
            }
            (Route::NewContact, _) => {
                // Someone answering one of our invitations: a contact at once.
                let first = self.open_first_contact(tx, &message, envelope).await?;
                let name = first.hello.name.clone();
                // At 0, or where a removal of them left their stream.
                let at =
                    session_stream_version(tx, &self.store, first.identity.root.as_bytes()).await?;
                return Ok(Received::NewContact(self.contact_proposal(
                    first,
                    name,
                    Some(mailbox.0),
                    at,
                    false,
                )?));
            }
            // A request is only ever routed for a first message, which names its sender;
            // were it not, the envelope is refused (never blocking those behind it).
            (Route::Request, None) => {
                return Err(ClientError::Rejected("a message request without a sender"));
            }
        };
        let mut session = self
            .store
            .get_session(tx, &name)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(name.clone()))?;
        let plaintext = match session.decrypt(&message) {
            Ok(plaintext) => plaintext,
            Err(e) => {
                return self
                    .receive_off_current(tx, mailbox, kind, &name, &session, &message, envelope, e)
                    .await;
            }
        };
        let payload = Payload::decode(&plaintext)?;
        let mut events = self.take_rolls(tx, &name, &payload).await?;
        events.extend(take_name(tx, &name, &payload).await?);
        let row = self.take_hello(tx, &name, &payload, mailbox).await?;
        events.extend(super::timer::take_timer(tx, &name, &row.root, payload.timer).await?);
        events.extend(
            self.deliver(tx, &name, &payload, envelope, now, &row)
                .await?,
        );
        self.store.put_session(tx, &name, &session).await?;
        Ok(Received::Done(events))
    }

    /// What a contact's message says about the route: its hello (where to write back
    /// from now on), and that it answered — through our own mailbox for it, so it has
    /// our hello. Returns the contact as it stands after.
    pub(super) async fn take_hello(
        &self,
        tx: &mut SqliteConnection,
        name: &str,
        payload: &Payload,
        mailbox: &Id32,
    ) -> Result<ContactRow, ClientError> {
        if let Some(hello) = &payload.hello {
            let relay_url = self.url_policy().check(&hello.relay_url)?;
            set_contact_route(tx, name, &hello.mailbox.0, &relay_url).await?;
        }
        let row = self
            .store
            .contact_row(&mut *tx, name)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(name.to_owned()))?;
        let acked = row.hello_acked || row.recv_mailbox == mailbox.0;
        mark_answered(tx, name, acked).await?;
        Ok(row)
    }

    /// A received message's text into the history (once per envelope), unless the
    /// contact (`row`, as it stands) is blocked: then it is dropped
    /// ([`chorus_core::route::delivery`]).
    pub(super) async fn deliver(
        &self,
        tx: &mut SqliteConnection,
        name: &str,
        payload: &Payload,
        envelope: &EnvelopeOut,
        now: i64,
        row: &ContactRow,
    ) -> Result<Vec<Event>, ClientError> {
        let sent_ms = i64::try_from(payload.sent_ms).unwrap_or(i64::MAX);
        let read_up_to = row.read_up_to;
        if (payload.text.is_empty() && payload.file.is_none())
            || delivery(self.is_blocked(tx, &row.root).await?) == Delivery::Drop
            || !self
                .store
                .insert_message(
                    tx,
                    name,
                    false,
                    &envelope.envelope_id.0,
                    (&payload.text, payload.file.as_ref()),
                    sent_ms,
                    now,
                    envelope.seq,
                )
                .await?
        {
            return Ok(Vec::new());
        }
        Ok(vec![Event::Message(Message {
            contact: name.to_owned(),
            outgoing: false,
            text: payload.text.clone(),
            sent_ms,
            stored_ms: now,
            read: sent_ms <= read_up_to,
            pending: false,
            delivery: None,
            file: payload
                .file
                .as_ref()
                .map(|f| FileInfo::of(&envelope.envelope_id.0, f)),
        })])
    }

    /// A message from a contact that its current session cannot read: one already on
    /// its way on a session that stopped being current (read until it drains), or a
    /// new handshake from the contact, settled by `chorus_core::handshakes` and
    /// proposed to the log with the decision; else the current session's `error`.
    #[allow(clippy::too_many_arguments)]
    async fn receive_off_current(
        &self,
        tx: &mut SqliteConnection,
        mailbox: &Id32,
        kind: MailboxKind,
        name: &str,
        current: &chorus_core::Session,
        message: &EncryptedMessage,
        envelope: &EnvelopeOut,
        error: chorus_core::SessionError,
    ) -> Result<Received, ClientError> {
        let now = self.now();
        for (id, since_ms, mut stale) in self.store.stale_sessions(tx, name, now).await? {
            match stale.decrypt(message) {
                Ok(plaintext) => {
                    self.store
                        .put_stale_session(tx, name, id, since_ms, &stale)
                        .await?;
                    // Only the text: a read-only session's hello moves nothing.
                    let payload = Payload::decode(&plaintext)?;
                    let row = self
                        .store
                        .contact_row(&mut *tx, name)
                        .await?
                        .ok_or_else(|| ClientError::UnknownContact(name.to_owned()))?;
                    return Ok(Received::Done(
                        self.deliver(tx, name, &payload, envelope, now, &row)
                            .await?,
                    ));
                }
                // The handshake a sibling already settled into this session.
                Err(e @ chorus_core::SessionError::DuplicateOrExpired { .. }) => {
                    return Err(e.into());
                }
                Err(_) => {}
            }
        }
        if message.kind != MessageKind::Initial
            || !matches!(error, chorus_core::SessionError::WrongSession)
        {
            return Err(error.into());
        }
        let first = self.open_first_contact(tx, message, envelope).await?;
        let theirs = *first.identity.root.as_bytes();
        // Only the contact this mailbox is for may start over in it: the relay knows
        // every mailbox id, and anyone else would become a contact past the requests.
        if contact_named_by(&mut *tx, &theirs).await?.as_deref() != Some(name) {
            return Err(ClientError::Rejected(
                "a first message from someone else in a contact's mailbox",
            ));
        }
        // The contact rolled their identity key since: only a holder of the old one
        // (a thief of one of their devices) still starts sessions under it.
        if pinned_root(&mut *tx, name).await? != Some(theirs) {
            return Err(ClientError::Rejected(
                "a first message under a key the contact rolled away from",
            ));
        }
        // A first message taken before, put back (the relay keeps and can repost
        // every envelope): it would move the conversation back onto an old session.
        let base_key = *InitialMessage::decode(&message.bytes)?.ephemeral.as_bytes();
        if handshake_seen(tx, &theirs, &base_key).await? {
            return Err(ClientError::Rejected("a replayed first message"));
        }
        let failed = self
            .store
            .contact_standing(&mut *tx, name)
            .await?
            .and_then(|(_, failed)| failed);
        let settled = handshakes::settle(
            handshakes::CurrentSession {
                awaiting_reply: current.awaiting_reply(),
                failed: failed.is_some(),
            },
            self.me().identity.keys().root.as_bytes(),
            &theirs,
        );
        let at = session_stream_version(tx, &self.store, &theirs).await?;
        let invitation = (kind == MailboxKind::Invitation).then_some(mailbox.0);
        Ok(Received::NewContact(self.contact_proposal(
            first,
            name.to_owned(),
            invitation,
            at,
            settled == handshakes::Settled::KeepCurrent,
        )?))
    }

    /// A first message from someone who is not a contact, authenticated by the
    /// handshake: the session after it, who sent it, where to answer. Nothing is
    /// written here.
    pub(crate) async fn open_first_contact(
        &self,
        tx: &mut SqliteConnection,
        message: &EncryptedMessage,
        envelope: &EnvelopeOut,
    ) -> Result<FirstContact, ClientError> {
        let initial = InitialMessage::decode(&message.bytes)?;
        let ids: Vec<u32> = [
            Some(initial.signed_prekey_id),
            initial.one_time_prekey_id,
            Some(initial.pq_prekey_id),
        ]
        .into_iter()
        .flatten()
        .collect();
        let loaded = LoadedPrekeys::load(&self.store, tx, &ids).await?;
        let responded = respond(&self.me().identity, &loaded, &message.bytes)?;
        let payload = Payload::decode(&responded.plaintext)?;
        let mut hello = payload
            .hello
            .ok_or(ClientError::Rejected("a first message without a hello"))?;
        // Where we will answer, chosen by the sender: checked before anything is kept.
        hello.relay_url = self.url_policy().check(&hello.relay_url)?;
        let identity = responded
            .session
            .their_identity()
            .cloned()
            .ok_or_else(|| ClientError::Corrupt("session identity".into()))?;
        Ok(FirstContact {
            session: responded.session,
            identity,
            hello,
            first: FirstMessage {
                envelope_id: envelope.envelope_id.0,
                sent_ms: payload.sent_ms,
                text: payload.text,
                file: payload.file,
            },
            consumed: prekeys::consumed_ids(&responded.consumed),
        })
    }

    /// The events that make `first` a contact called `name` and answer it with our
    /// hello naming a new mailbox (decided by [`chorus_core::propose_contact`]): `at`
    /// is the session stream's version to create at, `read_only` keeps a handshake that
    /// lost only to read.
    pub(crate) fn contact_proposal(
        &self,
        first: FirstContact,
        name: String,
        invitation: Option<[u8; 32]>,
        at: i64,
        read_only: bool,
    ) -> Result<Vec<Pending>, ClientError> {
        // Registered at the relay only once the contact is in the log
        // (`register_pending`, before the hello naming it is posted).
        let recv: [u8; 32] = self.random();
        let proposal = Proposal {
            name,
            invitation,
            at,
            read_only,
            ours: self.hello(&recv),
            answer_id: self.random(),
            now_ms: u64::try_from(self.now()).unwrap_or(0),
        };
        let guarded = chorus_core::propose_contact(first, proposal, &mut self.rng())?;
        Ok(guarded.into_iter().map(Pending::from).collect())
    }
}

/// What the core's failure policy needs to know of an error.
fn failure(e: &ClientError) -> Failure {
    match e {
        ClientError::Session(e) => Failure::of_session(e),
        e if e.is_transient() => Failure::Transient,
        _ => Failure::Bad,
    }
}

/// The event for an envelope refused for good: only its cursor moves.
fn rejected(e: &ClientError) -> Vec<Event> {
    tracing::warn!(error = %e, "envelope rejected");
    vec![Event::Rejected {
        reason: format!("an envelope: {e}"),
    }]
}

enum Received {
    /// Applied in the caller's transaction.
    Done(Vec<Event>),
    /// A new contact: these events must be appended (outside any transaction).
    NewContact(Vec<Pending>),
}

/// The display name contact `alias` last told us.
async fn their_name(tx: &mut SqliteConnection, alias: &str) -> Result<Option<String>, ClientError> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT their_name FROM contacts WHERE name = $1")
            .bind(alias)
            .fetch_optional(&mut *tx)
            .await?
            .flatten(),
    )
}

/// What a contact's message says of their display name (`Payload::name`, or the hello's
/// in their first messages): kept as theirs, and a change is an event. The first name
/// heard is only kept (our name for them came from the same place). Whether our name
/// for them follows is decided after the message is stored
/// ([`Device::follow_renames`]).
async fn take_name(
    tx: &mut SqliteConnection,
    alias: &str,
    payload: &Payload,
) -> Result<Vec<Event>, ClientError> {
    let Some(said) = payload
        .name
        .as_deref()
        .or(payload.hello.as_ref().map(|h| h.name.as_str()))
    else {
        return Ok(Vec::new());
    };
    let was = their_name(tx, alias).await?;
    if was.as_deref() == Some(said) {
        return Ok(Vec::new());
    }
    sqlx::query("UPDATE contacts SET their_name = $1 WHERE name = $2")
        .bind(said)
        .bind(alias)
        .execute(&mut *tx)
        .await?;
    Ok(match was {
        None => Vec::new(),
        Some(was) => vec![Event::ContactRenamed {
            contact: alias.to_owned(),
            was,
            now: said.to_owned(),
        }],
    })
}

impl Device {
    /// For each contact that told a new display name in `events`: where our name for
    /// them was their old one (we never chose one of our own), ours follows, on every
    /// device (a rename in the log; refused, and kept, if another contact has that
    /// name). The event then names them as they are called now. Best effort: a rename
    /// that cannot be logged now leaves our name for them as it was.
    pub(super) async fn follow_renames(&self, events: &mut [Event]) {
        let mut renamed = Vec::new();
        for e in events.iter_mut() {
            if let Event::ContactRenamed { contact, was, now } = e
                && contact.to_lowercase() == was.to_lowercase()
                && contact != now
            {
                match self.rename_contact(contact, now).await {
                    Ok((from, to)) => {
                        *contact = to.clone();
                        renamed.push((from, to));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "our name for a contact did not follow theirs")
                    }
                }
            }
        }
        // Their messages in the same batch are shown under the name they have now.
        for (from, to) in renamed {
            for e in events.iter_mut() {
                if let Event::Message(m) = e
                    && m.contact == from
                {
                    m.contact.clone_from(&to);
                }
            }
        }
    }
}
