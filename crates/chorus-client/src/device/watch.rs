//! Following the relay's push channel.

use std::time::Duration;

use chorus_relay_api::{EnvelopeOut, Id32, Push};

use super::{Device, OUTBOX_RETRY, PREKEY_CHECK};
use crate::{ClientError, Event};

impl Device {
    /// Follows the push channel: catches up, then processes envelopes as they arrive,
    /// reconnecting with backoff when the connection drops. `on_event` returns `false`
    /// to stop. `on_link` hears `Ok` each time the device is connected and caught up,
    /// and every problem (which is retried) as `Err`.
    pub async fn watch(
        &self,
        mut on_event: impl FnMut(&Event) -> bool,
        mut on_link: impl FnMut(Result<(), &ClientError>),
    ) -> Result<(), ClientError> {
        let mut failures = 0u32;
        loop {
            let mut push = match self.relay.connect_push().await {
                Ok(p) => p,
                Err(e) => {
                    on_link(Err(&e.into()));
                    tokio::time::sleep(
                        self.options
                            .backoff
                            .delay(failures)
                            .max(Duration::from_millis(100)),
                    )
                    .await;
                    failures = failures.saturating_add(1);
                    continue;
                }
            };
            // Subscribed first, then caught up: nothing falls in between.
            match self.sync().await {
                Ok(events) => {
                    for e in &events {
                        if !on_event(e) {
                            return Ok(());
                        }
                    }
                }
                Err(e) => {
                    on_link(Err(&e));
                    continue;
                }
            }
            failures = 0;
            on_link(Ok(()));
            let _ = self.maintain_prekeys().await.map_err(|e| on_link(Err(&e)));
            // Timers while connected: retry the outbox, keep the directory supplied, say
            // this device is online.
            let mut outbox_tick = tokio::time::interval(OUTBOX_RETRY);
            let mut prekey_tick = tokio::time::interval(PREKEY_CHECK);
            let mut heartbeat = tokio::time::interval(self.options.heartbeat);
            outbox_tick.reset();
            prekey_tick.reset();
            heartbeat.reset();
            loop {
                let events = tokio::select! {
                    next = push.next() => match next {
                        None => break,
                        Some(Ok(Push::Envelopes { mailbox_id, envelopes })) => {
                            self.process_pushed(mailbox_id, &envelopes).await
                        }
                        // A sibling appended: fold (its sends show up as ours), and
                        // send what it handed to this device (`leader`, `primary`).
                        Some(Ok(Push::Records { .. })) => self.sync_log_and_send().await,
                        Some(Err(e)) => Err(e.into()),
                    },
                    _ = outbox_tick.tick() => self.flush_outbox().await.map(|_| Vec::new()),
                    _ = prekey_tick.tick() => match self.maintain_prekeys().await {
                        Ok(()) => self.compact_log().await.map(|_| Vec::new()),
                        Err(e) => Err(e),
                    },
                    // Presence and cursors are best effort: a missed beat is not worth a
                    // reconnect, and a missed report only delays the relay's sweep.
                    _ = heartbeat.tick() => {
                        let _ = self.beat().await;
                        let _ = self.report_cursors().await;
                        Ok(Vec::new())
                    }
                };
                match events {
                    Ok(events) => {
                        for e in &events {
                            if !on_event(e) {
                                return Ok(());
                            }
                        }
                    }
                    Err(e) => {
                        on_link(Err(&e));
                        break;
                    }
                }
            }
        }
    }

    /// Folds the log; if that left messages to send (a sibling's, handed over under
    /// `leader` or `primary`), sends them and posts the outbox.
    async fn sync_log_and_send(&self) -> Result<Vec<Event>, ClientError> {
        let events = self.sync_log().await?;
        if self.store.unsent().await? > 0 {
            self.flush_outbox().await?;
        }
        Ok(events)
    }

    /// Pushed envelopes are processed directly when they continue the cursor; after a
    /// gap (a reconnect, an expiry) the mailbox is read over HTTP instead.
    pub(super) async fn process_pushed(
        &self,
        mailbox: Id32,
        envelopes: &[EnvelopeOut],
    ) -> Result<Vec<Event>, ClientError> {
        // A primary's sibling leaves the contacts' mailboxes to the primary.
        let after = self
            .store
            .cursor(&mailbox.0, self.reads_contacts().await?)
            .await?;
        let Some(after) = after else {
            return Ok(Vec::new());
        };
        let contiguous = envelopes
            .iter()
            .find(|e| e.seq > after)
            .is_none_or(|first| Some(first.seq) == after.checked_add(1));
        if !contiguous {
            return self.sync().await;
        }
        let mut events = Vec::new();
        for e in envelopes {
            events.extend(self.process(mailbox, e).await?);
        }
        self.follow_renames(&mut events).await;
        self.adopt_timers(&events).await;
        self.fan_out().await?;
        Ok(events)
    }
}
