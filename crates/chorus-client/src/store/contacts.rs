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

/// The root key we hold for the contact `name` now: their first, or the last one they
/// rolled to.
pub(crate) async fn pinned_root(
    tx: &mut SqliteConnection,
    name: &str,
) -> Result<Option<[u8; 32]>, ClientError> {
    let identity: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT identity FROM contacts WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    identity
        .map(|i| Ok(*IdentityKeys::decode(&i)?.root.as_bytes()))
        .transpose()
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

/// What sending to a contact needs from its row.
pub(crate) struct ContactRow {
    pub(crate) root: [u8; 32],
    pub(crate) relay_url: String,
    pub(crate) send_mailbox: Vec<u8>,
    pub(crate) recv_mailbox: Vec<u8>,
    pub(crate) hello_acked: bool,
    /// Our claim on their invitation, when we still write to it.
    pub(crate) invitation_claim: Option<Vec<u8>>,
    /// Their messages sent at or before this are read (on some device).
    pub(crate) read_up_to: i64,
    /// Our root key they answered holding (our rolls go with every message until it
    /// is the current one).
    pub(crate) roll_acked: Option<Vec<u8>>,
    /// Their root as we hold it, owed to them in `roll_seen`.
    pub(crate) roll_answer: Option<Vec<u8>>,
}

/// `contacts`: root key, relay URL, send mailbox, receive mailbox, hello acknowledged,
/// invitation claim.
type ContactTuple = (
    Vec<u8>,
    String,
    Vec<u8>,
    Vec<u8>,
    bool,
    Option<Vec<u8>>,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// A contact as `chorus contacts` lists it: name, identity keys, relay URL, answered,
/// added, unread, why it failed, whether it is marked compromised.
pub(crate) type ListedContact = (
    String,
    Vec<u8>,
    String,
    bool,
    i64,
    i64,
    Option<String>,
    bool,
);

/// Why a contact whose invitation someone else had used can never answer.
pub(crate) const INVITATION_SPENT: &str = "their invitation had already been used by someone else";

impl super::Store {
    /// The contact called `name`, as sending needs it.
    pub(crate) async fn contact_row<'e, E: sqlx::SqliteExecutor<'e>>(
        &self,
        executor: E,
        name: &str,
    ) -> Result<Option<ContactRow>, ClientError> {
        let row: Option<ContactTuple> = sqlx::query_as(
            "SELECT root_key, relay_url, send_mailbox, recv_mailbox, hello_acked,
                    CASE WHEN invitation = send_mailbox THEN invitation_claim END, read_up_to,
                    roll_acked, roll_answer
             FROM contacts WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(executor)
        .await?;
        row.map(
            |(
                root,
                relay_url,
                send_mailbox,
                recv_mailbox,
                hello_acked,
                invitation_claim,
                read_up_to,
                roll_acked,
                roll_answer,
            )| {
                Ok(ContactRow {
                    root: root
                        .as_slice()
                        .try_into()
                        .map_err(|_| ClientError::Corrupt("contact key".into()))?,
                    relay_url,
                    send_mailbox,
                    recv_mailbox,
                    hello_acked,
                    invitation_claim,
                    read_up_to,
                    roll_acked,
                    roll_answer,
                })
            },
        )
        .transpose()
    }

    /// Every contact's alias, in name order.
    pub(crate) async fn contact_names(&self) -> Result<Vec<String>, ClientError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM contacts ORDER BY name")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Every contact with its unread count, in name order.
    pub(crate) async fn contact_list(&self) -> Result<Vec<ListedContact>, ClientError> {
        Ok(sqlx::query_as(
            "SELECT c.name, c.identity, c.relay_url, c.answered, c.added_ms,
                    (SELECT COUNT(*) FROM messages m
                     WHERE m.contact = c.name AND m.outgoing = 0 AND m.sent_ms > c.read_up_to),
                    c.failed, c.compromised IS NOT NULL
             FROM contacts c ORDER BY c.name",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// The contact who gave us the invitation `mailbox`, if we accepted it.
    pub(crate) async fn contact_by_invitation(
        &self,
        mailbox: &[u8; 32],
    ) -> Result<Option<String>, ClientError> {
        Ok(
            sqlx::query_scalar("SELECT name FROM contacts WHERE invitation = $1")
                .bind(&mailbox[..])
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The contact's identity keys (encoded), if it is a contact.
    /// With it, the identity another roll named if the contact is marked compromised.
    pub(crate) async fn contact_identity(
        &self,
        name: &str,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>, ClientError> {
        Ok(
            sqlx::query_as("SELECT identity, compromised FROM contacts WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Whether the contact has answered, and why it never can if so.
    pub(crate) async fn contact_standing<'e, E: sqlx::SqliteExecutor<'e>>(
        &self,
        executor: E,
        name: &str,
    ) -> Result<Option<(bool, Option<String>)>, ClientError> {
        Ok(
            sqlx::query_as("SELECT answered, failed FROM contacts WHERE name = $1")
                .bind(name)
                .fetch_optional(executor)
                .await?,
        )
    }

    /// The contact's root key, its read marker and the newest message from it.
    pub(crate) async fn read_state(
        &self,
        name: &str,
    ) -> Result<Option<(Vec<u8>, i64, Option<i64>)>, ClientError> {
        Ok(sqlx::query_as(
            "SELECT c.root_key, c.read_up_to,
                    (SELECT MAX(sent_ms) FROM messages m WHERE m.contact = c.name AND m.outgoing = 0)
             FROM contacts c WHERE c.name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }
}

/// The contact's hello moved where we write to them.
pub(crate) async fn set_contact_route(
    tx: &mut SqliteConnection,
    name: &str,
    mailbox: &[u8; 32],
    relay_url: &str,
) -> Result<(), ClientError> {
    sqlx::query("UPDATE contacts SET send_mailbox = $1, relay_url = $2 WHERE name = $3")
        .bind(&mailbox[..])
        .bind(relay_url)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A message from the contact arrived (`hello_acked`: our hello reached them).
pub(crate) async fn mark_answered(
    tx: &mut SqliteConnection,
    name: &str,
    hello_acked: bool,
) -> Result<(), ClientError> {
    sqlx::query("UPDATE contacts SET hello_acked = $1, answered = 1 WHERE name = $2")
        .bind(hello_acked)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
