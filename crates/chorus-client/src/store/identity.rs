//! This device's own rows: the identity (name, relay, log id, intro mailbox and its
//! sealed secrets), the log's epoch key, the roster it starts from, and the keys of a
//! link still in progress.
//!
//! Secrets go in and come out as plaintext byte strings; what they decode to is
//! [`crate::identity`]'s business. Each is sealed under its own row's name.

use chorus_crypto::EpochKey;
use chorus_relay_api::Id32;
use zeroize::Zeroizing;

use super::Store;
use super::log_state::seal_epoch_key;
use super::mailboxes::insert_mailbox;
use crate::ClientError;

/// `identity`: name, relay URL, log id, intro mailbox, and the secrets (opened).
pub(crate) struct IdentityRow {
    pub(crate) name: String,
    pub(crate) relay_url: String,
    pub(crate) log_id: Vec<u8>,
    pub(crate) intro_mailbox: Vec<u8>,
    pub(crate) secrets: Zeroizing<Vec<u8>>,
}

/// Everything a new device's store starts with (see [`Store::create_device`]).
pub(crate) struct NewDevice<'a> {
    pub(crate) name: &'a str,
    pub(crate) relay_url: &'a str,
    pub(crate) log_id: Id32,
    pub(crate) intro: Id32,
    /// The identity secrets, encoded.
    pub(crate) secrets: &'a [u8],
    pub(crate) epoch: u32,
    pub(crate) epoch_key: &'a EpochKey,
    pub(crate) roster: &'a [Vec<u8>],
    pub(crate) applied_seq: i64,
    pub(crate) checkpoint: Option<&'a chorus_wire::Checkpoint>,
    pub(crate) now: i64,
}

impl Store {
    /// Writes a new device in one transaction: identity, log keys, roster, intro
    /// mailbox and, for a linked device, the checkpoint it starts from (a pending
    /// link's keys are removed in the same transaction).
    pub(crate) async fn create_device(&self, new: NewDevice<'_>) -> Result<(), ClientError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO identity (id, name, relay_url, log_id, intro_mailbox, sealed, created_ms)
             VALUES (1, $1, $2, $3, $4, $5, $6)",
        )
        .bind(new.name)
        .bind(new.relay_url)
        .bind(&new.log_id.0[..])
        .bind(&new.intro.0[..])
        .bind(self.seal("identity", "1", new.secrets))
        .bind(new.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO constellation (id, applied_seq, epoch, sealed) VALUES (1, $1, $2, $3)",
        )
        .bind(new.applied_seq)
        .bind(i64::from(new.epoch))
        .bind(seal_epoch_key(self, new.epoch_key))
        .execute(&mut *tx)
        .await?;
        for (i, entry) in new.roster.iter().enumerate() {
            sqlx::query("INSERT INTO roster (idx, entry) VALUES ($1, $2)")
                .bind(i64::try_from(i).unwrap_or(i64::MAX))
                .bind(entry)
                .execute(&mut *tx)
                .await?;
        }
        insert_mailbox(&mut tx, &new.intro.0, "intro", None, new.now).await?;
        if let Some(checkpoint) = new.checkpoint {
            self.import_checkpoint(&mut tx, checkpoint).await?;
        }
        sqlx::query("DELETE FROM pending_link")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The identity row, if this store holds a device.
    pub(crate) async fn identity(&self) -> Result<Option<IdentityRow>, ClientError> {
        type Row = (String, String, Vec<u8>, Vec<u8>, Vec<u8>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT name, relay_url, log_id, intro_mailbox, sealed FROM identity WHERE id = 1",
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(|(name, relay_url, log_id, intro_mailbox, sealed)| {
            Ok(IdentityRow {
                name,
                relay_url,
                log_id,
                intro_mailbox,
                secrets: self.open_sealed("identity", "1", &sealed)?,
            })
        })
        .transpose()
    }

    /// A link in progress: the relay it is for, the device name and its keys (opened).
    pub(crate) async fn pending_link(
        &self,
    ) -> Result<Option<(String, String, Zeroizing<Vec<u8>>)>, ClientError> {
        let row: Option<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT relay_url, device_name, sealed FROM pending_link WHERE id = 1")
                .fetch_optional(self.pool())
                .await?;
        row.map(|(url, name, sealed)| {
            Ok((url, name, self.open_sealed("pending_link", "1", &sealed)?))
        })
        .transpose()
    }

    /// Starts (or restarts, for another relay) a link in progress.
    pub(crate) async fn put_pending_link(
        &self,
        relay_url: &str,
        device_name: &str,
        keys: &[u8],
        now: i64,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT OR REPLACE INTO pending_link (id, relay_url, device_name, sealed, created_ms)
             VALUES (1, $1, $2, $3, $4)",
        )
        .bind(relay_url)
        .bind(device_name)
        .bind(self.seal("pending_link", "1", keys))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

impl Store {
    /// Sets or deletes the root key in this device's sealed identity secrets (the
    /// security level changed), inside the fold's transaction.
    pub(crate) async fn set_root(
        &self,
        tx: &mut sqlx::SqliteConnection,
        root: Option<chorus_crypto::RootSigningKey>,
    ) -> Result<(), ClientError> {
        self.update_identity(tx, |secrets| secrets.root = root)
            .await
    }

    /// The identity rolled (`chorus identity roll`): its new DH secret and public keys,
    /// and its new root on a device that holds the root (any other loses the old one).
    pub(crate) async fn set_rolled_identity(
        &self,
        tx: &mut sqlx::SqliteConnection,
        rolled: chorus_core::RolledSecrets,
        keys: &chorus_wire::IdentityKeys,
    ) -> Result<(), ClientError> {
        self.update_identity(tx, |secrets| {
            secrets.root = rolled.root;
            secrets.dh = rolled.dh;
            secrets.keys = keys.encode();
        })
        .await?;
        sqlx::query("UPDATE identity SET roll_due = 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Rewrites the sealed identity secrets with `change`, and keeps the identity
    /// they make for the device to take up ([`Self::take_changed_identity`]).
    async fn update_identity(
        &self,
        tx: &mut sqlx::SqliteConnection,
        change: impl FnOnce(&mut crate::identity::IdentitySecrets),
    ) -> Result<(), ClientError> {
        let sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM identity WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let plain = self.open_sealed("identity", "1", &sealed)?;
        let mut secrets = crate::identity::IdentitySecrets::from_bytes(&plain)?;
        change(&mut secrets);
        sqlx::query("UPDATE identity SET sealed = $1 WHERE id = 1")
            .bind(self.seal("identity", "1", &secrets.to_bytes()?))
            .execute(&mut *tx)
            .await?;
        let crate::identity::IdentitySecrets { root, keys, dh, .. } = secrets;
        let identity = crate::identity::local_identity(root, &keys, dh)?;
        *self
            .changed_identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(identity);
        Ok(())
    }

    /// Whether this device folded a roll it has not finished (`finish_roll_if_due`).
    pub(crate) async fn roll_due(&self) -> Result<bool, ClientError> {
        Ok(
            sqlx::query_scalar("SELECT roll_due FROM identity WHERE id = 1")
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(false),
        )
    }

    /// The roll this device folded is finished.
    pub(crate) async fn clear_roll_due(&self) -> Result<(), ClientError> {
        sqlx::query("UPDATE identity SET roll_due = 0 WHERE id = 1")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The identity a fold rewrote since the last call, if any.
    pub(crate) fn take_changed_identity(&self) -> Option<chorus_core::LocalIdentity> {
        self.changed_identity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
