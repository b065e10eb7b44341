//! The outbox: envelopes logged as sent but not yet posted (a contact on another
//! relay, a refused bundle, a relay that was down), posted in order per mailbox
//! with backoff, each marked `Delivered` in the log once the relay has it.

use chorus_relay_api::limits::MAX_APPEND_BATCH;
use chorus_relay_api::{Id16, Id32};
use chorus_wire::EventKind;
use futures::StreamExt;

use super::{Device, OUTBOX_PARALLEL, id32, outbox_delay};
use crate::ClientError;
use crate::log::Pending;
use crate::relay::{Backoff, MailboxUse, RelayClient, RelayError};

/// What posting one queue did: the envelope ids posted, and the row that failed.
type QueueOutcome = (Vec<[u8; 16]>, Option<([u8; 16], RelayError)>);

/// One mailbox's due outbox rows, oldest first.
struct OutboxQueue {
    relay_url: String,
    mailbox: Id32,
    /// Envelope id, bytes, and our claim on the mailbox if it is an invitation's.
    rows: Vec<([u8; 16], Vec<u8>, Option<Id16>)>,
}

impl Device {
    /// Registers at the home relay the mailboxes created for new contacts while
    /// receiving (no network call runs inside a transaction). A mailbox the relay
    /// refuses stays unregistered and is tried again next time; it never stops the
    /// others (or the outbox).
    pub(super) async fn register_pending(&self) -> Result<Vec<RelayError>, ClientError> {
        let pending = self.store.unregistered_mailboxes().await?;
        let mut errors = Vec::new();
        for (m, kind) in pending {
            match self
                .relay
                .register_mailbox(id32(&m)?, MailboxUse::from_kind(&kind))
                .await
            {
                Ok(_) => self.store.mark_registered(&m).await?,
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
        if self.store.waiting().await.is_ok_and(|n| n == 0)
            && self.send_pending().await.is_ok()
            && self.store.queued(envelope_id).await.is_ok_and(|q| !q)
        {
            return None;
        }
        self.flush_one(envelope_id).await
    }

    /// Posts the outbox, oldest first (so earlier queued messages keep their order),
    /// and reports whether `envelope_id` is now with the relay (`None`) or still queued.
    pub(super) async fn flush_one(&self, envelope_id: &[u8; 16]) -> Option<RelayError> {
        let mut errors = match self.flush_outbox().await {
            Ok(errors) => errors,
            Err(e) => vec![RelayError::BadResponse {
                url: self.me().relay_url.clone(),
                reason: e.to_string(),
            }],
        };
        match self.store.queued(envelope_id).await {
            Ok(false) => None,
            _ => Some(errors.pop().unwrap_or_else(|| RelayError::BadResponse {
                url: self.me().relay_url.clone(),
                reason: "the envelope is still queued".into(),
            })),
        }
    }

    /// Messages not yet with a relay: waiting to be encrypted (the home relay was away)
    /// or to be posted (the outbox).
    pub async fn unsent(&self) -> Result<i64, ClientError> {
        self.store.unsent().await
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
        self.post_outbox(self.options.sibling_delivery).await
    }

    /// Posts the outbox as [`Self::flush_outbox`] does, without syncing or sending
    /// first: every envelope this device appended, and a sibling's once it has waited
    /// `patience`. Before a heal's anchor, with no patience at all: the contact cuts
    /// off every chain beside the anchor, so whatever was logged before it must be in
    /// the mailbox first.
    pub(super) async fn post_outbox(
        &self,
        patience: std::time::Duration,
    ) -> Result<Vec<RelayError>, ClientError> {
        let relay_errors = |e: ClientError| match e {
            ClientError::Relay(e) => Ok(vec![e]),
            other => Err(other),
        };
        // A queued hello may name a mailbox not yet registered: register first.
        let mut errors = self.register_pending().await?;
        let now = self.now();
        let patience = i64::try_from(patience.as_millis()).unwrap_or(i64::MAX);
        let rows = self
            .store
            .due_outbox(
                &self.log.keys.device,
                now.saturating_sub(patience),
                now,
                &self.me().relay_url,
            )
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
                if e.code() == Some("mailbox_spent") && self.store.invitation_spent(&id).await? {
                    errors.push(e);
                    continue;
                }
                let attempts = self.store.outbox_failed(&id, &e.to_string()).await?;
                let delay = i64::try_from(outbox_delay(attempts).as_millis()).unwrap_or(i64::MAX);
                self.store
                    .outbox_retry_at(&id, now.saturating_add(delay))
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

    /// Posts one mailbox's queue in order, stopping at the first failure (the rows
    /// behind it keep their order). Returns what was posted and the failure.
    async fn post_queue(&self, queue: OutboxQueue) -> QueueOutcome {
        let mut posted = Vec::new();
        let client = if queue.relay_url == self.me().relay_url {
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
