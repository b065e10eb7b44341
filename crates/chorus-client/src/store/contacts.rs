//! Rows of the contacts table that the fold and the commands both write or read.

use chorus_wire::IdentityKeys;
use sqlx::SqliteConnection;

use crate::ClientError;

/// The alias of the contact whose root key is `root`, if it is a contact.
pub(crate) async fn contact_named_by<'e, E: sqlx::SqliteExecutor<'e>>(
    executor: E,
    root: &[u8],
) -> Result<Option<String>, ClientError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM contacts WHERE root_key = $1")
            .bind(root)
            .fetch_optional(executor)
            .await?,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_contact(
    tx: &mut SqliteConnection,
    name: &str,
    identity: &IdentityKeys,
    relay_url: &str,
    send_mailbox: &[u8],
    recv_mailbox: &[u8],
    invitation: Option<&[u8]>,
    now: i64,
) -> Result<(), ClientError> {
    sqlx::query(
        "INSERT INTO contacts (name, root_key, identity, relay_url, send_mailbox, recv_mailbox, invitation, added_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(name)
    .bind(&identity.root.as_bytes()[..])
    .bind(identity.encode())
    .bind(relay_url)
    .bind(send_mailbox)
    .bind(recv_mailbox)
    .bind(invitation)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Whether a first message with `base_key` was taken from `root` before.
pub(crate) async fn handshake_seen(
    tx: &mut SqliteConnection,
    root: &[u8; 32],
    base_key: &[u8; 32],
) -> Result<bool, ClientError> {
    let seen: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM handshakes WHERE contact_root = $1 AND base_key = $2")
            .bind(&root[..])
            .bind(&base_key[..])
            .fetch_optional(&mut *tx)
            .await?;
    Ok(seen.is_some())
}
