//! What a device shows: history, the identity's devices and its status.

use chorus_wire::SecurityLevel;

use super::{Device, DeviceInfo, MailboxStatus, OutboxProblem, Status};
use crate::store::log_state::{load_roster, register};
use crate::store::prekeys as store_prekeys;
use crate::{ClientError, Message};

impl Device {
    /// The last `limit` messages with a contact, oldest first.
    pub async fn history(&self, contact: &str, limit: u32) -> Result<Vec<Message>, ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        self.expire_messages().await?;
        let read_up_to = self
            .store
            .contact_row(self.store.pool(), contact)
            .await?
            .ok_or_else(|| ClientError::UnknownContact(contact.to_owned()))?
            .read_up_to;
        Ok(self
            .store
            .history(contact, limit, &self.log.keys.device[..])
            .await?
            .into_iter()
            .map(
                |(outgoing, text, sent_ms, stored_ms, pending, delivery, file)| Message {
                    contact: contact.to_owned(),
                    outgoing,
                    text,
                    sent_ms,
                    stored_ms,
                    read: outgoing || sent_ms <= read_up_to,
                    pending,
                    delivery,
                    file,
                },
            )
            .collect())
    }

    /// Tells the relay this device is here and notes which siblings it hears from now
    /// (best effort: presence is advisory). `None`: the relay could not be asked.
    pub(crate) async fn beat(&self) -> Option<chorus_relay_api::PresenceResponse> {
        let _ = self.relay.heartbeat().await;
        let presence = self.relay.presence().await.ok()?;
        if let Err(e) = self.store.note_seen(&presence.devices).await {
            tracing::debug!(error = %e, "could not note who was online");
        }
        Some(presence)
    }

    /// The identity's devices, from the roster as folded, with the relay's presence
    /// and when this device last saw each one online.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let presence = self.beat().await;
        // Current without a separate sync (offline: as last folded).
        if let Err(e) = self.sync_log().await
            && !e.is_transient()
        {
            return Err(e);
        }
        let seen = self.store.last_seen().await?;
        let mut conn = self.store.pool().acquire().await?;
        let roster = load_roster(&mut conn, &self.log.keys.log_id).await?;
        let mut relinked = std::collections::HashMap::new();
        let mut renamed = std::collections::HashMap::new();
        for d in roster.devices() {
            let name = register(
                &mut *conn,
                &chorus_core::device_name_register(d.key.as_bytes()),
            )
            .await?;
            if let Some(name) = name.and_then(|v| String::from_utf8(v).ok()) {
                renamed.insert(*d.key.as_bytes(), name);
            }
            let at = register(
                &mut *conn,
                &chorus_core::relinked_register(d.key.as_bytes()),
            )
            .await?;
            if let Some(at) = at.and_then(|v| <[u8; 8]>::try_from(v).ok()) {
                relinked.insert(*d.key.as_bytes(), u64::from_be_bytes(at));
            }
        }
        Ok(roster
            .devices()
            .iter()
            .map(|d| {
                let key = *d.key.as_bytes();
                DeviceInfo {
                    relinked_ms: relinked.get(&key).copied(),
                    name: renamed.get(&key).cloned().unwrap_or_else(|| d.name.clone()),
                    id: hex::encode(&key[..8]),
                    added_ms: d.added_ms,
                    online: presence
                        .as_ref()
                        .is_some_and(|p| p.devices.iter().any(|x| x.device_id.0 == key)),
                    last_seen_ms: seen.get(&key[..]).copied(),
                    this_device: key == self.log.keys.device,
                    primary: roster.primary() == Some(&d.key),
                }
            })
            .collect())
    }

    /// Relay reachability, outbox, cursors and prekeys.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let relay_error = self.relay.health().await.err().map(|e| e.to_string());
        let outbox = self.store.unsent().await?;
        let failing = self.store.failing_outbox().await?;
        let requests = self.store.request_count().await?;
        let mailboxes = self.store.mailbox_list().await?;
        let mut conn = self.store.pool().acquire().await?;
        let prekeys = store_prekeys::counts(&mut conn).await?;
        let roster = load_roster(&mut conn, &self.log.keys.log_id).await?;
        let security = match roster.level() {
            SecurityLevel::SharedRoot => "shared-root",
            SecurityLevel::PrimaryRoot => "primary-root",
        };
        let recovery_code = roster.recovery_key().is_some();
        let directory_one_time = if relay_error.is_none() {
            self.relay
                .prekey_count(self.me().directory_address())
                .await
                .ok()
                .map(|c| c.one_time)
        } else {
            None
        };
        Ok(Status {
            name: self.me().name.clone(),
            address: self.address(),
            relay_url: self.me().relay_url.clone(),
            relay_error,
            outbox,
            outbox_failing: failing
                .into_iter()
                .map(
                    |(contact, relay_url, attempts, error, next_attempt_ms)| OutboxProblem {
                        contact,
                        relay_url,
                        attempts,
                        error,
                        next_attempt_ms,
                    },
                )
                .collect(),
            requests,
            mailboxes: mailboxes
                .into_iter()
                .map(|(kind, contact, after_seq)| MailboxStatus {
                    kind,
                    contact,
                    after_seq,
                })
                .collect(),
            prekeys,
            directory_one_time,
            security,
            holds_root: self.holds_root(),
            recovery_code,
        })
    }

    /// Whether this device holds the identity's root key (see [`Status::holds_root`]).
    pub fn holds_root(&self) -> bool {
        self.me().identity.root().is_some()
    }
}
