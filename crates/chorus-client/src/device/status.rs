//! What a device shows: history, the identity's devices and its status.

use super::*;

impl Device {
    /// The last `limit` messages with a contact, oldest first.
    pub async fn history(&self, contact: &str, limit: u32) -> Result<Vec<Message>, ClientError> {
        let contact = &self.resolve_contact(contact).await?;
        if self
            .contact_row(self.store.pool(), contact)
            .await?
            .is_none()
        {
            return Err(ClientError::UnknownContact(contact.to_owned()));
        }
        // One order on every device: the sender's clock, then direction, then the
        // position in the mailbox (incoming) or the log (outgoing). Messages still
        // waiting for the log (relay unreachable) come last.
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT outgoing, envelope_id, sent_ms, stored_ms, sealed, tbl FROM (
               SELECT * FROM (
                 SELECT outgoing, envelope_id, sent_ms, stored_ms, sealed, 'message' AS tbl,
                        0 AS pending, position FROM messages WHERE contact = $1
                 UNION ALL
                 SELECT 1, envelope_id, created_ms, created_ms, sealed, 'pending_send',
                        1, 0 FROM pending_sends WHERE contact = $1
               ) ORDER BY pending DESC, sent_ms DESC, outgoing DESC, position DESC LIMIT $2
             ) ORDER BY pending ASC, sent_ms ASC, outgoing ASC, position ASC",
        )
        .bind(contact)
        .bind(i64::from(limit))
        .fetch_all(self.store.pool())
        .await?;
        rows.into_iter()
            .map(
                |(outgoing, envelope_id, sent_ms, stored_ms, sealed, table)| {
                    let text = self.store.open_sealed(
                        &table,
                        &row::message(&envelope_id, contact, outgoing),
                        &sealed,
                    )?;
                    Ok(Message {
                        contact: contact.to_owned(),
                        outgoing,
                        text: String::from_utf8(text.to_vec())
                            .map_err(|_| ClientError::Corrupt("message text".into()))?,
                        sent_ms,
                        stored_ms,
                    })
                },
            )
            .collect()
    }

    /// The identity's devices, from the roster as folded, with the relay's presence.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, ClientError> {
        let _ = self.relay.heartbeat().await;
        // Current without a separate sync (offline: as last folded).
        if let Err(e) = self.sync_log().await
            && !e.is_transient()
        {
            return Err(e);
        }
        let presence = self.relay.presence().await.ok();
        let mut conn = self.store.pool().acquire().await?;
        let roster = crate::store::log_state::load_roster(&mut conn, &self.log.keys.log_id).await?;
        let mut relinked = std::collections::HashMap::new();
        for d in roster.devices() {
            let at: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT value FROM registers WHERE name = $1")
                    .bind(chorus_core::relinked_register(d.key.as_bytes()))
                    .fetch_optional(&mut *conn)
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
                    name: d.name.clone(),
                    id: hex::encode(&key[..8]),
                    added_ms: d.added_ms,
                    last_seen_ms: presence.as_ref().and_then(|p| {
                        p.devices
                            .iter()
                            .find(|x| x.device_id.0 == key)
                            .map(|x| x.last_seen_ms)
                    }),
                    this_device: key == self.log.keys.device,
                }
            })
            .collect())
    }

    /// Relay reachability, outbox, cursors and prekeys.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let relay_error = self.relay.health().await.err().map(|e| e.to_string());
        let outbox: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM outbox) + (SELECT COUNT(*) FROM pending_sends)",
        )
        .fetch_one(self.store.pool())
        .await?;
        let failing: Vec<(String, String, i64, String, i64)> = sqlx::query_as(
            "SELECT contact, relay_url, attempts, last_error, next_attempt_ms FROM outbox
             WHERE last_error IS NOT NULL ORDER BY created_ms, rowid",
        )
        .fetch_all(self.store.pool())
        .await?;
        let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests")
            .fetch_one(self.store.pool())
            .await?;
        let mailboxes: Vec<(String, Option<String>, i64)> =
            sqlx::query_as("SELECT kind, contact, after_seq FROM mailboxes ORDER BY rowid")
                .fetch_all(self.store.pool())
                .await?;
        let mut conn = self.store.pool().acquire().await?;
        let prekeys = prekeys::counts(&mut conn).await?;
        let security = match crate::store::log_state::load_roster(&mut conn, &self.log.keys.log_id)
            .await?
            .level()
        {
            SecurityLevel::SharedRoot => "shared-root",
            SecurityLevel::PrimaryRoot => "primary-root",
        };
        let directory_one_time = if relay_error.is_none() {
            self.relay
                .prekey_count(self.me.directory_address())
                .await
                .ok()
                .map(|c| c.one_time)
        } else {
            None
        };
        Ok(Status {
            name: self.me.name.clone(),
            address: self.address(),
            relay_url: self.me.relay_url.clone(),
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
        })
    }

    /// Whether this device holds the identity's root key (see [`Status::holds_root`]).
    pub fn holds_root(&self) -> bool {
        self.me.identity.root().is_some()
    }
}
