//! The outbox: envelopes logged as sent but not yet posted (a contact on another
//! relay, a refused bundle, a relay that was down), posted in order per mailbox
//! with backoff, each marked `Delivered` in the log once the relay has it.

use super::*;

impl Device {
    /// Registers at the home relay the mailboxes created for new contacts while
    /// receiving (no network call runs inside a transaction). A mailbox the relay
    /// refuses stays unregistered and is tried again next time; it never stops the
    /// others (or the outbox).
    pub(super) async fn register_pending(&self) -> Result<Vec<RelayError>, ClientError> {
        let pending: Vec<(Vec<u8>, String)> =
            sqlx::query_as("SELECT mailbox_id, kind FROM mailboxes WHERE registered = 0")
                .fetch_all(self.store.pool())
                .await?;
        let mut errors = Vec::new();
        for (m, kind) in pending {
            match self
                .relay
                .register_mailbox(id32(&m)?, MailboxUse::from_kind(&kind))
                .await
            {
                Ok(_) => {
                    sqlx::query("UPDATE mailboxes SET registered = 1 WHERE mailbox_id = $1")
                        .bind(&m)
                        .execute(self.store.pool())
                        .await?;
                }
                Err(e @ RelayError::Unreachable { .. }) => {
                    errors.push(e);
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        Ok(errors)
    }

    /// Sends what is pending on the state as folded (a guard that finds it stale
    /// folds and tries again). If that delivered `envelope_id` — a bundled send —
    /// and nothing else waits (no outbox row, no unregistered mailbox a hello may
    /// name), the send is done: one relay request and two local commits in all.
    /// Otherwise the outbox is flushed as a whole ([`Self::flush_one`]).
    pub(super) async fn send_now(&self, envelope_id: &[u8; 16]) -> Option<RelayError> {
        let waiting: Result<i64, _> = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM outbox)
                  + (SELECT COUNT(*) FROM mailboxes WHERE registered = 0)",
        )
        .fetch_one(self.store.pool())
        .await;
        if waiting.is_ok_and(|n| n == 0)
            && self.send_pending().await.is_ok()
            && self.queued(envelope_id).await.is_ok_and(|q| !q)
        {
            return None;
        }
        self.flush_one(envelope_id).await
    }

    /// Whether `envelope_id` is still pending or in the outbox.
    pub(super) async fn queued(&self, envelope_id: &[u8; 16]) -> Result<bool, ClientError> {
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM outbox WHERE envelope_id = $1
             UNION ALL SELECT 1 FROM pending_sends WHERE envelope_id = $1",
        )
        .bind(&envelope_id[..])
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Posts the outbox, oldest first (so earlier queued messages keep their order),
    /// and reports whether `envelope_id` is now with the relay (`None`) or still queued.
    pub(super) async fn flush_one(&self, envelope_id: &[u8; 16]) -> Option<RelayError> {
        let mut errors = match self.flush_outbox().await {
            Ok(errors) => errors,
            Err(e) => vec![RelayError::BadResponse {
                url: self.me.relay_url.clone(),
                reason: e.to_string(),
            }],
        };
        match self.queued(envelope_id).await {
            Ok(false) => None,
            _ => Some(errors.pop().unwrap_or_else(|| RelayError::BadResponse {
                url: self.me.relay_url.clone(),
                reason: "the envelope is still queued".into(),
            })),
        }
    }

    /// Sends what is pending, then posts the outbox: every envelope this device
    /// appended, and a sibling's once it has waited [`Options::sibling_delivery`] (the
    /// sibling may have died after its `Sent` append). Each posted envelope gets a
    /// `Delivered` event, which removes it from every device's outbox. Posting is
    /// idempotent by envelope id, so two devices delivering one envelope deliver it
    /// once.
    ///
    /// One mailbox's envelopes go in order, one at a time; different mailboxes go at
    /// once, up to [`OUTBOX_PARALLEL`], so a slow or dead relay holds up only its own
    /// rows. A row that fails on a contact's relay waits before its next try
    /// ([`outbox_delay`], doubling up to [`OUTBOX_MAX_DELAY`]); rows for the home relay
    /// are tried on every flush (it is the relay every command needs anyway). The
    /// errors are returned and kept with their rows for `chorus status`.
    pub async fn flush_outbox(&self) -> Result<Vec<RelayError>, ClientError> {
        let relay_errors = |e: ClientError| match e {
            ClientError::Relay(e) => Ok(vec![e]),
            other => Err(other),
        };
        if let Err(e) = self.sync_log().await {
            return relay_errors(e);
        }
        if let Err(e) = self.send_pending().await {
            return relay_errors(e);
        }
        // A queued hello may name a mailbox not yet registered: register first.
        let mut errors = self.register_pending().await?;
        let now = self.now();
        let patience = i64::try_from(self.options.sibling_delivery.as_millis()).unwrap_or(i64::MAX);
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT o.envelope_id, o.relay_url, o.mailbox_id, o.envelope, c.invitation_claim
             FROM outbox o LEFT JOIN contacts c ON c.name = o.contact AND c.invitation = o.mailbox_id
             WHERE (o.author IS NULL OR o.author = $1 OR o.created_ms <= $2)
               AND (o.next_attempt_ms <= $3 OR o.relay_url = $4)
             ORDER BY o.created_ms, o.rowid",
        )
        .bind(&self.log.keys.device[..])
        .bind(now.saturating_sub(patience))
        .bind(now)
        .bind(&self.me.relay_url)
        .fetch_all(self.store.pool())
        .await?;
        // One queue per mailbox, in first-seen order.
        let mut queues: Vec<OutboxQueue> = Vec::new();
        for (envelope_id, relay_url, mailbox, envelope, claim) in rows {
            let id = <[u8; 16]>::try_from(envelope_id.as_slice())
                .map_err(|_| ClientError::Corrupt("envelope id".into()))?;
            let claim = claim
                .map(|c| <[u8; 16]>::try_from(c.as_slice()).map(Id16))
                .transpose()
                .map_err(|_| ClientError::Corrupt("invitation claim".into()))?;
            let mailbox = id32(&mailbox)?;
            let row = (id, envelope, claim);
            match queues
                .iter_mut()
                .find(|q| q.mailbox == mailbox && q.relay_url == relay_url)
            {
                Some(q) => q.rows.push(row),
                None => queues.push(OutboxQueue {
                    relay_url,
                    mailbox,
                    rows: vec![row],
                }),
            }
        }
        let results: Vec<QueueOutcome> =
            futures::stream::iter(queues.into_iter().map(|q| self.post_queue(q)))
                .buffer_unordered(OUTBOX_PARALLEL)
                .collect()
                .await;
        let mut delivered = Vec::new();
        for (posted, failed) in results {
            delivered.extend(posted);
            if let Some((id, e)) = failed {
                // Someone else answered this invitation first: nothing queued for it
                // can ever arrive, and the contact can never answer.
                if e.code() == Some("mailbox_spent") && self.invitation_spent(&id).await? {
                    errors.push(e);
                    continue;
                }
                let attempts: i64 = sqlx::query_scalar(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2
                     WHERE envelope_id = $1 RETURNING attempts",
                )
                .bind(&id[..])
                .bind(e.to_string())
                .fetch_optional(self.store.pool())
                .await?
                .unwrap_or(0);
                let delay = i64::try_from(outbox_delay(attempts).as_millis()).unwrap_or(i64::MAX);
                sqlx::query("UPDATE outbox SET next_attempt_ms = $2 WHERE envelope_id = $1")
                    .bind(&id[..])
                    .bind(now.saturating_add(delay))
                    .execute(self.store.pool())
                    .await?;
                errors.push(e);
            }
        }
        for chunk in delivered.chunks(MAX_APPEND_BATCH) {
            let events = chunk
                .iter()
                .map(|id| Pending::free(EventKind::Delivered { envelope_id: *id }))
                .collect();
            if let Err(e) = self.append(events).await {
                // Posted but not yet marked: the next flush posts the same bytes again,
                // which the relay stores once, and marks them.
                errors.extend(relay_errors(e)?);
            }
        }
        Ok(errors)
    }

    /// The invitation `envelope_id` was posted to had been used by someone else: the
    /// contact is marked failed, and what was queued for that mailbox is dropped.
    /// False (nothing changed) unless the mailbox is the contact's invitation.
    pub(super) async fn invitation_spent(
        &self,
        envelope_id: &[u8; 16],
    ) -> Result<bool, ClientError> {
        let mut tx = self.store.begin().await?;
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT contact, mailbox_id FROM outbox WHERE envelope_id = $1")
                .bind(&envelope_id[..])
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((contact, mailbox)) = row {
            let marked =
                sqlx::query("UPDATE contacts SET failed = $1 WHERE name = $2 AND invitation = $3")
                    .bind(INVITATION_SPENT)
                    .bind(&contact)
                    .bind(&mailbox)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            // Only an invitation's mailbox is single-use: any other relay saying so
            // is wrong, and the rows stay to be retried.
            if marked == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM outbox WHERE contact = $1 AND mailbox_id = $2")
                .bind(&contact)
                .bind(&mailbox)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Posts one mailbox's queue in order, stopping at the first failure (the rows
    /// behind it keep their order). Returns what was posted and the failure.
    pub(super) async fn post_queue(&self, queue: OutboxQueue) -> QueueOutcome {
        let mut posted = Vec::new();
        let client = if queue.relay_url == self.me.relay_url {
            Ok(self.relay.clone())
        } else {
            // The row's own backoff does the retrying: one try per flush.
            let once = Backoff {
                attempts: 1,
                ..self.options.backoff
            };
            RelayClient::foreign(&queue.relay_url, once, self.url_policy())
        };
        for (id, envelope, claim) in queue.rows {
            let result = match &client {
                Ok(c) => c
                    .post_claimed(queue.mailbox, Id16(id), envelope, claim)
                    .await
                    .map(|_| ()),
                Err(e) => Err(RelayError::ForbiddenUrl {
                    url: queue.relay_url.clone(),
                    reason: match e {
                        RelayError::ForbiddenUrl { reason, .. } => reason,
                        _ => "not a relay URL",
                    },
                }),
            };
            match result {
                Ok(()) => posted.push(id),
                Err(e) => return (posted, Some((id, e))),
            }
        }
        (posted, None)
    }
}
