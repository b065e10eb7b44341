//! Disappearing messages: a timer per conversation, agreed with the contact in-band and
//! kept by every device of both identities.
//!
//! The setting is a register in the log (`TimerSet`; of two settings the later one
//! wins, by when it was set, so the order in which two logs hold them does not
//! matter). Every message says the conversation's timer as its sender holds it; a
//! device reading a later setting than its own adopts it for the whole identity (a
//! `TimerSet` of the same setting). Messages sent while a timer is on disappear that
//! long after they were sent, from every device's store ([`Device::expire_messages`],
//! run whenever the history or the contacts are read and at every sync).

use chorus_wire::{EventKind, Timer};
use sqlx::SqliteConnection;

use super::Device;
use crate::log::Pending;
use crate::{ClientError, Event};

impl Device {
    /// Sets the disappearing-message timer of the conversation with `given` (`secs`,
    /// 0: off) for every device of the identity; the contact adopts it with the next
    /// message. Returns the contact's name and the setting.
    pub async fn set_timer(&self, given: &str, secs: u64) -> Result<(String, Timer), ClientError> {
        let timer = Timer {
            set_ms: u64::try_from(self.now()).unwrap_or(0),
            secs,
        }
        .check("timer")?;
        self.sync_log().await?;
        let name = self.resolve_contact(given).await?;
        let root = self.contact_root(&name).await?;
        self.append(vec![Pending::free(EventKind::TimerSet {
            contact: root,
            timer,
        })])
        .await?;
        Ok((name, timer))
    }

    /// The conversation's timer as folded (`None`: never set).
    pub async fn timer(&self, given: &str) -> Result<(String, Option<Timer>), ClientError> {
        let name = self.resolve_contact(given).await?;
        let root = self.contact_root(&name).await?;
        let mut conn = self.store.pool().acquire().await?;
        Ok((name, held_timer(&mut conn, &root).await?))
    }

    /// Deletes every message whose time is up: first marks each message sent while its
    /// conversation's timer was on with when it disappears, then deletes those due.
    /// Returns how many were deleted.
    pub async fn expire_messages(&self) -> Result<u64, ClientError> {
        let now = self.now();
        let mut conn = self.store.pool().acquire().await?;
        let contacts: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT name, root_key FROM contacts")
                .fetch_all(&mut *conn)
                .await?;
        for (name, root) in contacts {
            let Ok(root) = <[u8; 32]>::try_from(root.as_slice()) else {
                continue;
            };
            let Some(t) = held_timer(&mut conn, &root).await?.filter(|t| t.secs > 0) else {
                continue;
            };
            let (set_ms, ms) = (
                i64::try_from(t.set_ms).unwrap_or(i64::MAX),
                i64::try_from(t.secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            );
            sqlx::query(
                "UPDATE messages SET expires_ms = sent_ms + $1
                 WHERE contact = $2 AND expires_ms IS NULL AND sent_ms >= $3",
            )
            .bind(ms)
            .bind(&name)
            .bind(set_ms)
            .execute(&mut *conn)
            .await?;
        }
        let gone =
            sqlx::query("DELETE FROM messages WHERE expires_ms IS NOT NULL AND expires_ms <= $1")
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        Ok(gone)
    }

    /// Adopts, for the whole identity, each later timer a contact's message said
    /// ([`Event::TimerChanged`] from [`take_timer`]). Best effort: a setting not logged
    /// now is adopted with the contact's next message.
    pub(super) async fn adopt_timers(&self, events: &[Event]) {
        for e in events {
            if let Event::TimerChanged {
                contact,
                secs,
                set_ms,
            } = e
            {
                let adopted = async {
                    let root = self.contact_root(contact).await?;
                    self.append(vec![Pending::free(EventKind::TimerSet {
                        contact: root,
                        timer: Timer {
                            set_ms: *set_ms,
                            secs: *secs,
                        },
                    })])
                    .await
                };
                if let Err(e) = adopted.await {
                    tracing::debug!(error = %e, "a contact's timer was not adopted yet");
                }
            }
        }
    }
}

/// A conversation's timer as this device folded it.
pub(super) async fn held_timer(
    conn: &mut SqliteConnection,
    root: &[u8; 32],
) -> Result<Option<Timer>, ClientError> {
    let value =
        crate::store::log_state::register(&mut *conn, &chorus_core::timer_register(root)).await?;
    Ok(value.and_then(|v| decode(&v)))
}

/// A setting as stored: `set_ms` then `secs`, 8 bytes each, big-endian.
fn encode(t: Timer) -> Vec<u8> {
    let mut v = t.set_ms.to_be_bytes().to_vec();
    v.extend_from_slice(&t.secs.to_be_bytes());
    v
}

fn decode(v: &[u8]) -> Option<Timer> {
    let v = <[u8; 16]>::try_from(v).ok()?;
    let (set, secs) = v.split_at(8);
    Some(Timer {
        set_ms: u64::from_be_bytes(set.try_into().ok()?),
        secs: u64::from_be_bytes(secs.try_into().ok()?),
    })
}

/// The timer setting contact `alias`'s messages last said.
pub(super) async fn their_timer(
    conn: &mut SqliteConnection,
    alias: &str,
) -> Result<Option<Timer>, ClientError> {
    let value: Option<Vec<u8>> = sqlx::query_scalar::<_, Option<Vec<u8>>>(
        "SELECT their_timer FROM contacts WHERE name = $1",
    )
    .bind(alias)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    Ok(value.and_then(|v| decode(&v)))
}

/// What a contact's message says of the conversation's timer: only a change from what
/// they said before counts, and then a later setting than the one held is an event
/// (adopted after the message is stored, [`Device::adopt_timers`]; the fold clamps a
/// setting to the time of the record that logs it, so a contact repeating a setting
/// from the future is taken up once, not with every message).
pub(super) async fn take_timer(
    conn: &mut SqliteConnection,
    alias: &str,
    root: &[u8; 32],
    said: Option<Timer>,
) -> Result<Vec<Event>, ClientError> {
    let Some(said) = said else {
        return Ok(Vec::new());
    };
    if their_timer(conn, alias).await? == Some(said) {
        return Ok(Vec::new());
    }
    sqlx::query("UPDATE contacts SET their_timer = $1 WHERE name = $2")
        .bind(encode(said))
        .bind(alias)
        .execute(&mut *conn)
        .await?;
    if held_timer(conn, root)
        .await?
        .is_some_and(|held| held >= said)
    {
        return Ok(Vec::new());
    }
    Ok(vec![Event::TimerChanged {
        contact: alias.to_owned(),
        secs: said.secs,
        set_ms: said.set_ms,
    }])
}
