//! The folded log state in the store: the rows `chorus_core::Constellation` is restored
//! from, and the batched writes that keep them equal to it after each page.
//!
//! Only SQL lives here. What the rows mean is decided by the core's fold; the test
//! `persisted_state_equals_the_core_state` (in `log_tests.rs`) restores a state from
//! these rows after folding and compares it with the one in memory.

use chorus_core::{Constellation, Contact, Lww, Parts, Roster, Stamp, StreamHead};
use chorus_crypto::EpochKey;
use chorus_relay_api::Id32;
use sqlx::SqliteConnection;

use crate::ClientError;

/// SQLite binds at most 32,766 values per statement; rows are written in chunks well
/// under that.
const ROWS_PER_STATEMENT: usize = 500;

fn fixed<const N: usize>(what: &str, bytes: &[u8]) -> Result<[u8; N], ClientError> {
    <[u8; N]>::try_from(bytes).map_err(|_| ClientError::Corrupt(format!("a stored {what}")))
}

fn unsigned(what: &str, value: i64) -> Result<u64, ClientError> {
    u64::try_from(value).map_err(|_| ClientError::Corrupt(format!("a stored {what}")))
}

/// Clamps a folded value into SQLite's signed integers (values past `i64::MAX` come
/// only from a device's own far-future clock and saturate, as they always did).
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Restores the folded state from the store.
pub(crate) async fn load(
    conn: &mut SqliteConnection,
    log_id: [u8; 32],
) -> Result<Constellation, ClientError> {
    type Row = (i64, i64, i64, i64, i64, i64);
    let (applied, lamport, epoch, epoch_revoked, log_epoch, epoch_since_ms): Row = sqlx::query_as(
        "SELECT applied_seq, lamport, epoch, epoch_revoked, log_epoch, epoch_since_ms
             FROM constellation WHERE id = 1",
    )
    .fetch_one(&mut *conn)
    .await?;
    let epoch_of =
        |e: i64| u32::try_from(e).map_err(|_| ClientError::Corrupt("a stored epoch".into()));
    let (epoch, log_epoch) = (epoch_of(epoch)?, epoch_of(log_epoch)?);
    let roster: Vec<Vec<u8>> = sqlx::query_scalar("SELECT entry FROM roster ORDER BY idx")
        .fetch_all(&mut *conn)
        .await?;
    let chain = sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT seq, hash FROM log_chain")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(seq, hash)| Ok((unsigned("seq", seq)?, fixed("chain hash", &hash)?)))
        .collect::<Result<_, ClientError>>()?;
    let streams = sqlx::query_as::<_, (Vec<u8>, i64, Option<Vec<u8>>)>(
        "SELECT tag, version, head FROM streams",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(tag, version, head)| {
        let head = head.map(|h| fixed("stream head", &h)).transpose()?;
        Ok((tag, StreamHead { version, head }))
    })
    .collect::<Result<_, ClientError>>()?;
    let seen = sqlx::query_scalar::<_, Vec<u8>>("SELECT event_id FROM seen_events")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|id| fixed("event id", id))
        .collect::<Result<_, ClientError>>()?;
    let registers = sqlx::query_as::<_, (String, i64, i64, Vec<u8>, Vec<u8>, Vec<u8>)>(
        "SELECT name, lamport, timestamp_ms, author, event_id, value FROM registers",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(name, lamport, ts, author, event_id, value)| {
        let stamp = Stamp {
            lamport: unsigned("lamport", lamport)?,
            timestamp_ms: unsigned("timestamp", ts)?,
            author: fixed("author", &author)?,
            event_id: fixed("event id", &event_id)?,
        };
        Ok((name, Lww::new(value, stamp)))
    })
    .collect::<Result<_, ClientError>>()?;
    let contacts = sqlx::query_as::<_, (Vec<u8>, String, i64)>(
        "SELECT root_key, name, read_up_to FROM contacts",
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(root, alias, read)| {
        Ok((
            fixed("root key", &root)?,
            Contact {
                alias,
                read_up_to: unsigned("read marker", read)?,
            },
        ))
    })
    .collect::<Result<_, ClientError>>()?;
    let invitations = sqlx::query_scalar::<_, Vec<u8>>(
        "SELECT mailbox_id FROM mailboxes WHERE kind = 'invitation'",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|m| fixed("mailbox", m))
    .collect::<Result<_, ClientError>>()?;
    Constellation::restore(Parts {
        log_id,
        epoch,
        epoch_revoked: unsigned("revocation count", epoch_revoked)?,
        log_epoch,
        epoch_since_ms: unsigned("epoch start", epoch_since_ms)?,
        roster,
        lamport: unsigned("lamport", lamport)?,
        applied: unsigned("seq", applied)?,
        chain,
        streams,
        seen,
        registers,
        contacts,
        invitations,
    })
    .map_err(|e| ClientError::Corrupt(format!("the folded log state: {e}")))
}

/// The folded seq as stored (another process on the same store may have moved it).
pub(crate) async fn applied_seq(conn: &mut SqliteConnection) -> Result<u64, ClientError> {
    let applied: i64 = sqlx::query_scalar("SELECT applied_seq FROM constellation WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    unsigned("seq", applied)
}

/// Writes rows of `width` values each as multi-row statements: `head` is the
/// statement up to `VALUES`, `bind` binds one row's values in order.
pub(crate) async fn insert_rows<T>(
    conn: &mut SqliteConnection,
    head: &str,
    tail: &str,
    width: usize,
    rows: &[T],
    bind: impl for<'q> Fn(
        sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
        &'q T,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
) -> Result<u64, sqlx::Error> {
    let mut affected = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = values_sql(head, tail, width, chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            q = bind(q, row);
        }
        affected += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(affected)
}

/// Deletes the rows of `table` (`pending_sends` or `outbox`) with these envelope ids.
pub(crate) async fn delete_envelopes(
    conn: &mut SqliteConnection,
    table: &'static str,
    ids: &[[u8; 16]],
) -> Result<u64, sqlx::Error> {
    let head = format!("DELETE FROM {table} WHERE envelope_id IN (SELECT column1 FROM (");
    insert_rows(conn, &head, "))", 1, ids, |q, id| q.bind(&id[..])).await
}

/// `head VALUES (?, ?), (?, ?) tail`.
pub(crate) fn values_sql(head: &str, tail: &str, width: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; width].join(", "));
    format!("{head} VALUES {} {tail}", vec![one; rows].join(", "))
}

/// The log position after a page: the chain rows, the seen ids, the streams moved,
/// the clock and the cursor.
pub(crate) async fn write_position(
    conn: &mut SqliteConnection,
    chain: &[(u64, [u8; 32])],
    seen: &[[u8; 16]],
    streams: &std::collections::BTreeMap<Vec<u8>, StreamHead>,
    lamport: u64,
    state: &chorus_core::Constellation,
) -> Result<(), ClientError> {
    insert_rows(
        conn,
        "INSERT INTO log_chain (seq, hash)",
        "",
        2,
        chain,
        |q, (seq, hash)| q.bind(signed(*seq)).bind(&hash[..]),
    )
    .await?;
    insert_rows(
        conn,
        "INSERT INTO seen_events (event_id)",
        "",
        1,
        seen,
        |q, id| q.bind(&id[..]),
    )
    .await?;
    for (tag, head) in streams {
        sqlx::query(
            "INSERT INTO streams (tag, version, head) VALUES ($1, $2, $3)
             ON CONFLICT (tag) DO UPDATE SET version = excluded.version, head = excluded.head",
        )
        .bind(tag)
        .bind(head.version)
        .bind(head.head.as_ref().map(|h| &h[..]))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "UPDATE constellation SET lamport = MAX(lamport, $1), applied_seq = $2, log_epoch = $3,
         epoch_since_ms = $4 WHERE id = 1",
    )
    .bind(signed(lamport))
    .bind(signed(state.applied()))
    .bind(i64::from(state.log_epoch()))
    .bind(signed(state.epoch_since_ms()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A register's new value.
pub(crate) async fn write_register(
    conn: &mut SqliteConnection,
    name: &str,
    value: &Lww<Vec<u8>>,
) -> Result<(), ClientError> {
    let stamp = value.stamp();
    sqlx::query(
        "INSERT INTO registers (name, lamport, timestamp_ms, author, event_id, value)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO UPDATE SET lamport = excluded.lamport,
           timestamp_ms = excluded.timestamp_ms, author = excluded.author,
           event_id = excluded.event_id, value = excluded.value",
    )
    .bind(name)
    .bind(signed(stamp.lamport))
    .bind(signed(stamp.timestamp_ms))
    .bind(&stamp.author[..])
    .bind(&stamp.event_id[..])
    .bind(value.get())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A register's value as folded, if it was ever written.
pub(crate) async fn register<'e, E: sqlx::SqliteExecutor<'e>>(
    executor: E,
    name: &str,
) -> Result<Option<Vec<u8>>, ClientError> {
    Ok(
        sqlx::query_scalar("SELECT value FROM registers WHERE name = $1")
            .bind(name)
            .fetch_optional(executor)
            .await?,
    )
}

/// The version a stream is at, as folded.
pub(crate) async fn stream_version(
    conn: &mut SqliteConnection,
    tag: &[u8],
) -> Result<i64, ClientError> {
    Ok(stream_head(conn, tag).await?.version)
}

/// The version a contact's session stream is at, as folded, under the epoch key stored
/// in the same snapshot (a key rotated since only makes the guard fail, and the caller
/// decide again).
pub(crate) async fn session_stream_version(
    conn: &mut SqliteConnection,
    store: &super::Store,
    root: &[u8; 32],
) -> Result<i64, ClientError> {
    let key = epoch_key(conn, store).await?;
    stream_version(conn, &key.stream_tag(&chorus_core::session_stream(root))).await
}

/// A stream as folded: its next version and the hash of its last record.
pub(crate) async fn stream_head(
    conn: &mut SqliteConnection,
    tag: &[u8],
) -> Result<StreamHead, ClientError> {
    let row: Option<(i64, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT version, head FROM streams WHERE tag = $1")
            .bind(tag)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match row {
        None => StreamHead::default(),
        Some((version, head)) => StreamHead {
            version,
            head: head.map(|h| hash32(&h)).transpose()?,
        },
    })
}

fn hash32(bytes: &[u8]) -> Result<[u8; 32], ClientError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| ClientError::Corrupt("a stored hash".into()))
}

/// The roster as folded: the stored chain, validated whole.
pub(crate) async fn load_roster(
    conn: &mut SqliteConnection,
    log_id: &Id32,
) -> Result<Roster, ClientError> {
    let entries = roster_entries(conn).await?;
    Roster::validate_chain(log_id.0, &entries)
        .map_err(|e| ClientError::Corrupt(format!("roster: {e}")))
}

/// The roster's entries as folded, in chain order.
pub(crate) async fn roster_entries(
    conn: &mut SqliteConnection,
) -> Result<Vec<Vec<u8>>, ClientError> {
    Ok(sqlx::query_scalar("SELECT entry FROM roster ORDER BY idx")
        .fetch_all(&mut *conn)
        .await?)
}

/// The roster entry at `idx`, if there is one.
pub(crate) async fn roster_entry(
    conn: &mut SqliteConnection,
    idx: u64,
) -> Result<Option<Vec<u8>>, ClientError> {
    Ok(
        sqlx::query_scalar("SELECT entry FROM roster WHERE idx = $1")
            .bind(i64::try_from(idx).unwrap_or(i64::MAX))
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Seals the epoch key for the store.
pub(crate) fn seal_epoch_key(store: &super::Store, key: &EpochKey) -> Vec<u8> {
    store.seal("constellation", "1", &key.to_bytes()[..])
}

/// The epoch key as stored (the key of the epoch [`load`] restores).
pub(crate) async fn epoch_key(
    conn: &mut SqliteConnection,
    store: &super::Store,
) -> Result<EpochKey, ClientError> {
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM constellation WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let raw = store.open_sealed("constellation", "1", &sealed)?;
    let raw = zeroize::Zeroizing::new(fixed::<32>("epoch key", &raw)?);
    Ok(EpochKey::from_bytes(&raw))
}

/// The log moved to a new epoch: its number, the revocations it covers and its key,
/// in one row, and every stream starts again.
pub(crate) async fn start_epoch(
    conn: &mut SqliteConnection,
    store: &super::Store,
    epoch: u32,
    revoked: u64,
    key: &EpochKey,
) -> Result<(), ClientError> {
    sqlx::query(
        "UPDATE constellation SET epoch = $1, epoch_revoked = $2, sealed = $3 WHERE id = 1",
    )
    .bind(i64::from(epoch))
    .bind(signed(revoked))
    .bind(seal_epoch_key(store, key))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM streams")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl super::Store {
    /// The epoch of the last recovery state this device wrote (`None`: never).
    pub(crate) async fn recovery_written(&self) -> Result<Option<u32>, ClientError> {
        let epoch: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM recovery_written WHERE id = 0")
                .fetch_optional(self.pool())
                .await?;
        Ok(epoch.and_then(|e| u32::try_from(e).ok()))
    }

    /// Notes that this device wrote the recovery state of `epoch`.
    pub(crate) async fn set_recovery_written(&self, epoch: u32) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO recovery_written (id, epoch) VALUES (0, $1)
             ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch",
        )
        .bind(i64::from(epoch))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
