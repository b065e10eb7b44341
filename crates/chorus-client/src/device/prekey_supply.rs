//! Keeping this device's prekeys at the directory: replenish and rotate.

use chorus_relay_api::{HexBytes, PublishPrekeysRequest};
use chorus_wire::{DirectoryEntry, MailboxId, SignedPrekey};

use super::Device;
use crate::ClientError;
use crate::log::{APPEND_ATTEMPTS, Appended, PREKEY_STREAM, Pending};
use crate::prekeys::{self, Generator, ONE_TIME_BATCH, Purpose, REPLENISH_BELOW};
use crate::store::prekeys as store_prekeys;

impl Device {
    /// Keeps the directory supplied: rotates the signed and last-resort prekeys when
    /// due, replenishes one-time prekeys below [`REPLENISH_BELOW`], republishes the
    /// directory entry, and deletes replaced keys past their grace period. New private
    /// halves go into the log (guarded on the prekey stream, so two devices never mint
    /// the same ids) and are folded before any public half is published.
    ///
    /// In `primary-root` only the primary device (the root's holder) mints and
    /// publishes; on the others this does nothing.
    pub async fn maintain_prekeys(&self) -> Result<(), ClientError> {
        self.supply_prekeys(false).await
    }

    /// [`Self::maintain_prekeys`]; with `renew`, every prekey the directory hands out
    /// is replaced whatever its age or count: a new signed and last-resort prekey, and
    /// fresh one-time batches that replace all one-time keys the directory still holds
    /// (after a revocation, the revoked device knows every earlier private half).
    pub(super) async fn supply_prekeys(&self, renew: bool) -> Result<(), ClientError> {
        let me = self.me();
        let Some(root) = me.identity.root() else {
            return Ok(());
        };
        let address = self.me().directory_address();
        let remote = match self.relay.prekey_count(address).await {
            Ok(c) => Some(c),
            Err(e) if e.code() == Some("not_found") => None,
            Err(e) => return Err(e.into()),
        };
        let mut request = PublishPrekeysRequest::default();
        self.sync_log().await?;
        for _ in 0..APPEND_ATTEMPTS {
            request = PublishPrekeysRequest::default();
            let now = self.now();
            let mut conn = self.store.pool().acquire().await?;
            let rotate = renew
                || match store_prekeys::current_signed(&mut conn).await? {
                    None => true,
                    Some((_, created)) => prekeys::rotation_due(created, now),
                };
            let next_id = store_prekeys::next_prekey_id(&mut conn).await?;
            let mut keys =
                Generator::new(next_id, root, &*self.options.entropy, Purpose::Directory);
            drop(conn);
            if rotate {
                keys.signed()?;
                keys.pq(true)?;
            }
            request.replace_one_time = renew;
            if renew || remote.as_ref().is_none_or(|c| c.one_time < REPLENISH_BELOW) {
                for _ in 0..ONE_TIME_BATCH {
                    request.one_time.push(HexBytes(keys.one_time()?.encode()));
                }
            }
            if renew
                || remote
                    .as_ref()
                    .is_none_or(|c| c.one_time_pq < REPLENISH_BELOW)
            {
                for _ in 0..ONE_TIME_BATCH {
                    request.one_time_pq.push(HexBytes(keys.pq(false)?.encode()));
                }
            }
            let events: Vec<Pending> = keys
                .into_events(None)
                .into_iter()
                .map(|k| Pending::guarded(k, PREKEY_STREAM.to_vec(), None))
                .collect();
            if events.is_empty() || self.append(events).await?.0 == Appended::Done {
                break;
            }
            request = PublishPrekeysRequest::default();
        }
        let mut tx = self.store.begin().await?;
        let (signed, last_resort) = store_prekeys::current_directory_keys(&mut tx).await?;
        let signed = signed.ok_or_else(|| ClientError::Corrupt("no signed prekey".into()))?;
        let entry = DirectoryEntry {
            identity: self.me().identity.keys().clone(),
            signed_prekey: SignedPrekey::decode(&signed, &self.me().identity.keys().root)?,
            intro_mailbox: MailboxId(self.me().intro_mailbox.0),
        };
        request.signed_prekey = Some(HexBytes(entry.encode()));
        request.pq_last_resort = last_resort.map(HexBytes);
        store_prekeys::purge_retired(&mut tx, prekeys::retired_before(self.now())).await?;
        tx.commit().await?;
        self.relay.publish_prekeys(address, &request).await?;
        Ok(())
    }
}
