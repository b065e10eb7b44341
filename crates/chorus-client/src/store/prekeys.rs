//! Private prekeys: the rows the fold writes from `PrekeysCreated` events and the reads
//! that answer first messages, publish the directory and count for `chorus status`.
//!
//! Each private half is sealed under its id, kind, last-resort flag and purpose, so a
//! row edited to pass for another kind of key fails to open. When keys are minted,
//! rotated and purged is decided by the `prekeys` module; only SQL lives here.

use std::collections::HashMap;

use chorus_core::{PrekeyPrivate, PrekeyStore};
use chorus_crypto::{OneTimePrekeySecret, PqPrekeySecret, SignedPrekeySecret};
use chorus_wire::{PrekeyKind, PrekeySecret};
use serde::Serialize;
use sqlx::SqliteConnection;

use super::{Store, row};
use crate::ClientError;

/// Which kind of prekey a row holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Signed,
    OneTime,
    Pq { last_resort: bool },
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Signed => "signed",
            Kind::OneTime => "one_time",
            Kind::Pq { .. } => "pq",
        }
    }
}

/// Who a prekey was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Published in the relay's directory.
    Directory,
    /// Inside one invitation code.
    Invitation,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Directory => "directory",
            Purpose::Invitation => "invitation",
        }
    }
}

/// The id the next minted prekey gets: past every id held and every id ever minted
/// (ids once minted are never minted again, even after their key was consumed).
pub(crate) async fn next_prekey_id(conn: &mut SqliteConnection) -> Result<u32, ClientError> {
    let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM prekeys")
        .fetch_one(&mut *conn)
        .await?;
    let minted: i64 = sqlx::query_scalar("SELECT max_prekey_id FROM constellation WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or(0);
    u32::try_from(max.max(minted) + 1)
        .map_err(|_| ClientError::Corrupt("prekey ids exhausted".into()))
}

/// Stores one private prekey from a folded `PrekeysCreated` event. A new directory
/// signed or last-resort key retires the one it replaces (kept for the grace period).
pub(crate) async fn insert_secret(
    store: &Store,
    conn: &mut SqliteConnection,
    k: &PrekeySecret,
    created_ms: i64,
) -> Result<(), ClientError> {
    let kind = match k.kind {
        PrekeyKind::Signed => Kind::Signed,
        PrekeyKind::OneTime => Kind::OneTime,
        PrekeyKind::Pq => Kind::Pq {
            last_resort: k.last_resort,
        },
    };
    let purpose = if k.invitation {
        Purpose::Invitation
    } else {
        Purpose::Directory
    };
    // The secret must parse as what it claims to be before it is kept.
    let secret = PrekeyPrivate::decode(k.secret.as_bytes())
        .ok_or(ClientError::Rejected("a prekey secret that does not parse"))?;
    let matches = matches!(
        (&secret, kind),
        (PrekeyPrivate::Signed(_), Kind::Signed)
            | (PrekeyPrivate::OneTime(_), Kind::OneTime)
            | (PrekeyPrivate::Pq(_), Kind::Pq { .. })
    );
    if !matches {
        return Err(ClientError::Rejected("a prekey secret of another kind"));
    }
    if purpose == Purpose::Directory
        && (kind == Kind::Signed || kind == (Kind::Pq { last_resort: true }))
    {
        sqlx::query(
            "UPDATE prekeys SET retired_ms = $1
             WHERE purpose = 'directory' AND retired_ms IS NULL AND kind = $2 AND last_resort = $3",
        )
        .bind(created_ms)
        .bind(kind.name())
        .bind(k.last_resort)
        .execute(&mut *conn)
        .await?;
    }
    let sealed = store.seal(
        "prekey",
        &row::prekey(i64::from(k.id), kind.name(), k.last_resort, purpose.name()),
        k.secret.as_bytes(),
    );
    sqlx::query(
        "INSERT OR IGNORE INTO prekeys (id, kind, last_resort, purpose, public, sealed, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(i64::from(k.id))
    .bind(kind.name())
    .bind(k.last_resort)
    .bind(purpose.name())
    .bind(&k.public)
    .bind(sealed)
    .bind(created_ms)
    .execute(&mut *conn)
    .await?;
    // Ids once minted are never minted again, even after their key was consumed.
    sqlx::query("UPDATE constellation SET max_prekey_id = MAX(max_prekey_id, $1) WHERE id = 1")
        .bind(i64::from(k.id))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The public halves of the current directory signed and last-resort prekeys.
pub(crate) async fn current_directory_keys(
    conn: &mut SqliteConnection,
) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), ClientError> {
    let signed: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT public FROM prekeys WHERE purpose = 'directory' AND retired_ms IS NULL
         AND kind = 'signed' ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let last_resort: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT public FROM prekeys WHERE purpose = 'directory' AND retired_ms IS NULL
         AND last_resort = 1 ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok((signed, last_resort))
}

/// The private prekeys one first message names, loaded for [`chorus_core::respond`].
#[derive(Default)]
pub(crate) struct LoadedPrekeys {
    signed: HashMap<u32, SignedPrekeySecret>,
    one_time: HashMap<u32, OneTimePrekeySecret>,
    pq: HashMap<u32, (PqPrekeySecret, bool)>,
}

impl LoadedPrekeys {
    /// Loads the rows with these ids (absent ids stay absent: `respond` names them).
    pub(crate) async fn load(
        store: &Store,
        conn: &mut SqliteConnection,
        ids: &[u32],
    ) -> Result<Self, ClientError> {
        let mut out = Self::default();
        for id in ids {
            let found: Option<(String, bool, String, Vec<u8>)> = sqlx::query_as(
                "SELECT kind, last_resort, purpose, sealed FROM prekeys WHERE id = $1",
            )
            .bind(i64::from(*id))
            .fetch_optional(&mut *conn)
            .await?;
            let Some((kind, last_resort, purpose, sealed)) = found else {
                continue;
            };
            let bytes = store.open_sealed(
                "prekey",
                &row::prekey(i64::from(*id), &kind, last_resort, &purpose),
                &sealed,
            )?;
            let secret = PrekeyPrivate::decode(&bytes)
                .ok_or_else(|| ClientError::Corrupt(format!("prekey {id}")))?;
            match secret {
                PrekeyPrivate::Signed(s) => {
                    out.signed.insert(*id, s);
                }
                PrekeyPrivate::OneTime(s) => {
                    out.one_time.insert(*id, s);
                }
                PrekeyPrivate::Pq(s) => {
                    out.pq.insert(*id, (s, last_resort));
                }
            }
        }
        Ok(out)
    }
}

impl PrekeyStore for LoadedPrekeys {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPrekeySecret> {
        self.signed.get(&id)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePrekeySecret> {
        self.one_time.get(&id)
    }
    fn pq_prekey(&self, id: u32) -> Option<(&PqPrekeySecret, bool)> {
        self.pq.get(&id).map(|(s, l)| (s, *l))
    }
}

/// Deletes the one-time prekeys a first message used (a last-resort key stays).
pub(crate) async fn delete_consumed_ids(
    conn: &mut SqliteConnection,
    ids: &[u32],
) -> Result<(), ClientError> {
    for &id in ids {
        sqlx::query("DELETE FROM prekeys WHERE id = $1 AND last_resort = 0")
            .bind(i64::from(id))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Counts of private prekeys held, for `chorus status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrekeyCounts {
    /// Signed prekeys (current and within their grace period).
    pub signed: i64,
    /// One-time X25519 prekeys not yet consumed.
    pub one_time: i64,
    /// ML-KEM prekeys (one-time and last-resort).
    pub pq: i64,
}

pub(crate) async fn counts(conn: &mut SqliteConnection) -> Result<PrekeyCounts, ClientError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, COUNT(*) FROM prekeys GROUP BY kind")
            .fetch_all(&mut *conn)
            .await?;
    let mut c = PrekeyCounts::default();
    for (kind, n) in rows {
        match kind.as_str() {
            "signed" => c.signed = n,
            "one_time" => c.one_time = n,
            _ => c.pq = n,
        }
    }
    Ok(c)
}

/// The current directory signed prekey's id and creation time, if any.
pub(crate) async fn current_signed(
    conn: &mut SqliteConnection,
) -> Result<Option<(u32, i64)>, ClientError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT id, created_ms FROM prekeys
         WHERE kind = 'signed' AND purpose = 'directory' AND retired_ms IS NULL
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(id, at)| {
        u32::try_from(id)
            .map(|id| (id, at))
            .map_err(|_| ClientError::Corrupt("prekey id".into()))
    })
    .transpose()
}

/// Deletes the replaced prekeys retired before `before_ms`; returns how many.
pub(crate) async fn purge_retired(
    conn: &mut SqliteConnection,
    before_ms: i64,
) -> Result<u64, ClientError> {
    let done = sqlx::query("DELETE FROM prekeys WHERE retired_ms IS NOT NULL AND retired_ms < $1")
        .bind(before_ms)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}
