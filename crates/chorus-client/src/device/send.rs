//! Sending: the pending send, the sequenced (and, on our own relay, bundled)
//! append of its `Sent` record, and the outbox for what still has to be posted.
//! Under `leader` and `primary` the core may say another device encrypts
//! ([`chorus_core::Role`]): the message is then handed to it through the log.

use chorus_core::{Outgoing, Recipient, Role, Strategy};
use chorus_relay_api::{BundledPost, HexBytes, Id16, Id32};
use chorus_wire::{Attachment, EventKind, FirstMessage, Hello, check_text};

use super::{Device, SendOutcome};
use crate::ClientError;
use crate::handle::failpoint;
use crate::log::{APPEND_ATTEMPTS, Appended, Pending};
use crate::store::contacts::ContactRow;
use crate::store::history::{PendingSend, has_message};

impl Device {
    /// Sends a text message. The text is kept (sealed) as a pending send first; it is
    /// encrypted only inside the sequenced append of its `Sent` event (DESIGN §6), then
    /// posted. If the home relay is unreachable the message waits, unencrypted by any
    /// ratchet key, and the next `send`, `sync` or `watch` sends it.
    pub async fn send(&self, contact: &str, text: &str) -> Result<SendOutcome, ClientError> {
        let envelope_id = self.queue_message(contact, text).await?;
        self.send_queued(envelope_id).await
    }

    /// The first half of [`Self::send`], on this device only: checks the text and keeps
    /// it (sealed) as a pending send, which history shows as pending from now on.
    /// Returns its envelope id, for [`Self::send_queued`]; without that call, the next
    /// `send`, `sync` or `watch` sends it.
    pub async fn queue_message(&self, contact: &str, text: &str) -> Result<[u8; 16], ClientError> {
        self.queue(contact, text, None).await
    }

    /// [`Self::queue_message`], with the file sent with it (already uploaded): the text
    /// is then a caption and may be empty.
    pub(super) async fn queue(
        &self,
        contact: &str,
        text: &str,
        file: Option<Attachment>,
    ) -> Result<[u8; 16], ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        check_text(text)?;
        // Whitespace alone shows as nothing on the other side.
        if text.trim().is_empty() && file.is_none() {
            return Err(ClientError::EmptyMessage);
        }
        if self
            .store
            .contact_row(self.store.pool(), contact)
            .await?
            .is_none()
        {
            return Err(ClientError::UnknownContact(contact.to_owned()));
        }
        let envelope_id: [u8; 16] = self.random();
        self.store
            .insert_pending_send(&envelope_id, contact, (text, file.as_ref()), self.now())
            .await?;
        Ok(envelope_id)
    }

    /// The second half of [`Self::send`]: encrypts and posts the pending send
    /// `envelope_id` (and any older one).
    pub async fn send_queued(&self, envelope_id: [u8; 16]) -> Result<SendOutcome, ClientError> {
        let queued = self.send_now(&envelope_id).await;
        // Handed to the device that encrypts: with the log, not lost, not failed.
        if self.store.requested(&envelope_id).await? {
            return Ok(SendOutcome {
                envelope_id,
                queued: None,
                forwarded_to: Some(self.sending_device().await?.unwrap_or_default()),
            });
        }
        Ok(SendOutcome {
            envelope_id,
            queued,
            forwarded_to: None,
        })
    }

    /// Appends a `Sent` event for every pending send, oldest first (or, where another
    /// device encrypts, a `ForwardRequested` for each not yet handed over).
    pub(super) async fn send_pending(&self) -> Result<(), ClientError> {
        for p in self.store.pending_sends().await? {
            self.send_logged(&p).await?;
        }
        Ok(())
    }

    /// Whether the next send to `contact` anchors a heal after a revocation
    /// (`Session::heal_due`).
    async fn heal_due(&self, contact: &str) -> Result<bool, ClientError> {
        let revocations = self.log.with_state(|s| s.roster().revoked_count()).await?;
        if revocations == 0 {
            return Ok(false);
        }
        let mut conn = self.store.pool().acquire().await?;
        let session = self.store.get_session(&mut conn, contact).await?;
        Ok(session.is_some_and(|s| s.heal_due(revocations)))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.now()).unwrap_or(0)
    }

    /// The send, escrowed in the log before the envelope exists anywhere else.
    ///
    /// `sequenced` (the default): encrypt on the session as folded at version `v`,
    /// append `Sent` guarded on `(session, v)`; if a sibling appended first, fold its
    /// send and encrypt again on top of it (the losing ciphertext is never used).
    ///
    /// `leaderless`: read the log and the mailboxes to their ends, then encrypt with a
    /// fresh DH step and append without a guard — never waiting on a sibling. A
    /// sibling sending at the same moment forks the ratchet; every device and the
    /// contact merge the fork (`docs/strategies.md` says what it costs).
    ///
    /// `leader` and `primary`: as `sequenced`, on the device the core names
    /// ([`chorus_core::Constellation::send_role`]) — taking or renewing the lease in
    /// the same atomic append, under `leader`. Any other device appends a
    /// `ForwardRequested` instead (once) and leaves the message pending.
    ///
    /// When the contact's mailbox is on our own relay the envelope travels in the
    /// same request as the record (the bundled send): the relay stores both or
    /// neither, the record says so, and no device ever puts it in an outbox. A relay
    /// that refuses the post (a full mailbox, or one that does not bundle) gets the
    /// same record and envelope unbundled, which the outbox then posts.
    pub(super) async fn send_logged(&self, pending: &PendingSend) -> Result<(), ClientError> {
        let PendingSend {
            contact,
            envelope_id,
            text,
            file,
            ..
        } = pending;
        let envelope_id = *envelope_id;
        let strategy = self.log.strategy().await?;
        if strategy == Strategy::PerDevice {
            let row = self
                .store
                .contact_row(self.store.pool(), contact)
                .await?
                .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
            // Toward a contact that does not run it, the shared session (as `sequenced`).
            if self.send_per_device(pending, &row).await? {
                return Ok(());
            }
        }
        let leaderless = strategy == Strategy::Leaderless;
        let heal_due = self.heal_due(contact).await?;
        if leaderless || heal_due {
            // No guard will tell us a sibling moved on: read what it logged and what
            // the contact sent, so the new DH step builds on the newest key there is
            // (a key the contact saw acknowledged elsewhere may be gone already). A
            // heal's anchor needs the same: the contact keeps its branch alone, and
            // cuts off every key of its own newer than the one the anchor is built on.
            self.log.sync_log().await?;
            // Boxed: taking an envelope may post the outbox, which sends what is
            // pending (a bounded recursion: each level takes what is new).
            Box::pin(self.receive_all()).await?;
        }
        if heal_due {
            // What was logged before the anchor reaches the contact before it, whoever
            // logged it: the contact cuts off every chain beside the anchor.
            for e in Box::pin(self.post_outbox(std::time::Duration::ZERO)).await? {
                tracing::debug!(error = %e, "an envelope logged before the heal waits");
            }
        }
        for _ in 0..APPEND_ATTEMPTS {
            // The session and the stream version come from one cut: the core decides
            // the guard on the state that folded this session.
            let mut cut = self.log.cut().await?;
            if has_message(&mut cut.tx, &envelope_id).await? {
                return Ok(());
            }
            let row = self
                .store
                .contact_row(&mut *cut.tx, contact)
                .await?
                .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
            let lease = match cut.state()?.send_role(&self.log.keys.device, self.now_ms()) {
                Role::Forward { .. } => {
                    drop(cut);
                    return self.request_forward(row.root, pending).await;
                }
                Role::TakeLease(lease) => Some(*lease),
                Role::Encrypt => None,
            };
            let mut session = self
                .store
                .get_session(&mut cut.tx, contact)
                .await?
                .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?;
            let state = cut.state()?;
            let rolls = state.roster().rolls();
            // Our name as the log has it now (a sibling may have changed it).
            let name = state.profile_name().map(str::to_owned);
            let timer = state.timer(&row.root);
            let mut outgoing =
                self.outgoing(&row, envelope_id, (text, file.as_ref()), rolls, name, timer)?;
            outgoing.fresh_step = leaderless;
            // A message that waited (the relay was away) keeps the time it was written.
            outgoing.now_ms = u64::try_from(pending.created_ms).unwrap_or(outgoing.now_ms);
            let plan = cut.state()?.plan_send(
                cut.key()?,
                outgoing,
                &self.me().relay_url,
                &mut session,
                &mut self.rng(),
            )?;
            // Nothing of this transaction is kept: the state moves only by the fold.
            drop(cut);
            let (mut sent, stream, version) = (plan.event, plan.stream, plan.version);
            let guarded = |kind| {
                let send = match leaderless {
                    true => Pending::free(kind),
                    false => Pending::guarded(kind, stream.clone(), Some(version)),
                };
                lease.iter().cloned().chain([send]).collect::<Vec<_>>()
            };
            let outcome = match bundled_post(&row, &sent)? {
                None => self.append(guarded(sent)).await?.0,
                Some(post) => match self.append_with(guarded(sent.clone()), Some(post)).await {
                    Ok((outcome, _)) => outcome,
                    Err(ClientError::Relay(e)) if e.code().is_some() => {
                        tracing::debug!(error = %e, "the relay refused the bundled post; sending it through the outbox");
                        // The same envelope: a message key encrypts one plaintext.
                        if let EventKind::Sent(m) = &mut sent {
                            m.bundled = false;
                        }
                        self.append(guarded(sent)).await?.0
                    }
                    Err(e) => return Err(e),
                },
            };
            if outcome == Appended::Done {
                failpoint("after-persist");
                return Ok(());
            }
            self.lost_races
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!("a sibling sent first; encrypting again on its state");
        }
        Err(ClientError::Contended)
    }

    /// Hands a pending message to the device that encrypts: a `ForwardRequested` in the
    /// log, once (a request whose answer was lost may be appended twice; every device
    /// keeps one pending row per envelope id, and the send ends it).
    async fn request_forward(
        &self,
        contact: [u8; 32],
        pending: &PendingSend,
    ) -> Result<(), ClientError> {
        if pending.requested {
            return Ok(());
        }
        let message = FirstMessage {
            envelope_id: pending.envelope_id,
            sent_ms: u64::try_from(pending.created_ms).unwrap_or(0),
            text: pending.text.clone(),
            file: pending.file.clone(),
        };
        self.append(vec![Pending::free(EventKind::ForwardRequested {
            contact,
            message,
        })])
        .await?;
        Ok(())
    }

    /// Encrypts `text` on `session` (which moves on by one send) into the `Sent` event
    /// that escrows it ([`chorus_core::seal_send`]), without a guard: for tests and
    /// benchmarks that build a send by hand.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn encrypt_sent(
        &self,
        row: &ContactRow,
        session: &mut chorus_core::Session,
        envelope_id: [u8; 16],
        text: &str,
    ) -> Result<EventKind, ClientError> {
        let outgoing =
            self.outgoing(row, envelope_id, (text, None), &[], Some(self.name()), None)?;
        Ok(chorus_core::seal_send(outgoing, session, &mut self.rng())?)
    }

    /// `text` to this contact, now.
    fn outgoing<'a>(
        &self,
        row: &'a ContactRow,
        envelope_id: [u8; 16],
        (text, file): (&'a str, Option<&'a Attachment>),
        rolls: &[chorus_wire::IdentityRoll],
        name: Option<String>,
        timer: Option<chorus_wire::Timer>,
    ) -> Result<Outgoing<'a>, ClientError> {
        let roll_seen = row
            .roll_answer
            .as_deref()
            .map(chorus_crypto::RootPublicKey::from_slice)
            .transpose()
            .map_err(|_| ClientError::Corrupt("contact roll answer".into()))?;
        Ok(Outgoing {
            to: recipient(row)?,
            envelope_id,
            text,
            file,
            hello: self.hello_until_acked(row)?,
            rolls: self.rolls_for(row, rolls),
            roll_seen,
            // Told in every message: a contact learns a new one with the next.
            name,
            timer,
            now_ms: u64::try_from(self.now()).unwrap_or(0),
            fresh_step: false,
        })
    }

    /// Our hello, carried in every message until the contact is known to have it.
    pub(super) fn hello_until_acked(&self, row: &ContactRow) -> Result<Option<Hello>, ClientError> {
        if row.hello_acked {
            return Ok(None);
        }
        Ok(Some(self.hello(&mailbox_id(&row.recv_mailbox)?)))
    }
}

fn mailbox_id(m: &[u8]) -> Result<[u8; 32], ClientError> {
    <[u8; 32]>::try_from(m).map_err(|_| ClientError::Corrupt("mailbox id".into()))
}

/// Where a message to this contact goes.
fn recipient(row: &ContactRow) -> Result<Recipient<'_>, ClientError> {
    Ok(Recipient {
        root: row.root,
        relay_url: &row.relay_url,
        mailbox: mailbox_id(&row.send_mailbox)?,
    })
}

/// The post that travels with `sent` when the core planned it bundled (see
/// [`chorus_core::Constellation::plan_send`]); `None` otherwise.
fn bundled_post(row: &ContactRow, sent: &EventKind) -> Result<Option<BundledPost>, ClientError> {
    let EventKind::Sent(m) = sent else {
        return Ok(None);
    };
    if !m.bundled {
        return Ok(None);
    }
    let claim = row
        .invitation_claim
        .as_deref()
        .map(|c| <[u8; 16]>::try_from(c).map(Id16))
        .transpose()
        .map_err(|_| ClientError::Corrupt("invitation claim".into()))?;
    Ok(Some(BundledPost {
        mailbox_id: Id32(m.mailbox),
        envelope_id: Id16(m.envelope_id),
        payload: HexBytes(m.envelope.clone()),
        claim,
    }))
}
