//! The SQL both backends share, written once.
//!
//! SQLite and PostgreSQL accept the same statements here (`$n` placeholders,
//! `ON CONFLICT`, `RETURNING`), so [`sql_store!`] implements [`super::RelayStore`]
//! for either from one text. What differs is passed in: the row-lock suffix
//! (`FOR UPDATE` on PostgreSQL, where several relay processes write concurrently;
//! nothing on SQLite, where the store serialises writers itself), the one-time
//! prekey consume statement (`SKIP LOCKED` on PostgreSQL), and how a write
//! transaction begins (`begin_write`, an inherent method of each store).

use super::{Login, LoginTable};
use crate::api::{Id16, Id32};
use crate::error::StoreError;

/// Decodes a stored 32-byte id; a wrong length means a corrupt database.
pub(crate) fn id32(v: Vec<u8>) -> Result<Id32, StoreError> {
    <[u8; 32]>::try_from(v.as_slice())
        .map(Id32)
        .map_err(|_| StoreError::Internal(sqlx::Error::Decode("stored id is not 32 bytes".into())))
}

/// Decodes a stored 16-byte id.
pub(crate) fn id16(v: Vec<u8>) -> Result<Id16, StoreError> {
    <[u8; 16]>::try_from(v.as_slice())
        .map(Id16)
        .map_err(|_| StoreError::Internal(sqlx::Error::Decode("stored id is not 16 bytes".into())))
}

/// Converts a count or size to the database's integer type.
pub(crate) fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Wraps a `SELECT seq, n … ORDER BY seq LIMIT …` (n = an item's byte length) so
/// each row also carries `before`, the bytes of the items ahead of it, and `rn`,
/// its position from 1. Reads are cut by bytes with `before <= max OR rn <= 2`:
/// every item that fits, the first that does not (so the caller knows more
/// follow), and always the first two (a first item larger than the bound still
/// goes out alone, and the caller still learns whether another follows).
macro_rules! bytes_window {
    ($inner:literal) => {
        concat!(
            "SELECT seq, SUM(n) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) - n AS before, \
             ROW_NUMBER() OVER (ORDER BY seq) AS rn FROM (",
            $inner,
            ") page"
        )
    };
}

pub(crate) use bytes_window;

/// Which envelopes (`e`) the sweep deletes at `$1` (now): past their TTL, and read past
/// by every current device of the mailbox's log (a device that never reported a
/// cursor for the mailbox has read nothing of it). A device offline for longer than
/// the TTL therefore misses nothing: its mailboxes' envelopes wait for it, counted in
/// the log's byte quota. A revoked device holds nothing back, and a `per-device` copy
/// waits only for the device it is for.
macro_rules! sweepable {
    () => {
        "e.expires_ms <= $1 AND NOT EXISTS ( \
           SELECT 1 FROM mailboxes m JOIN devices d ON d.log_id = m.log_id AND d.revoked_ms IS NULL \
           WHERE m.mailbox_id = e.mailbox_id \
             AND (e.recipient IS NULL OR e.recipient = d.device_id) AND COALESCE((SELECT c.after_seq FROM mailbox_cursors c \
             WHERE c.mailbox_id = e.mailbox_id AND c.device_id = d.device_id), 0) < e.seq)"
    };
}

pub(crate) use sweepable;

/// The statements on one login table (`auth_challenges` or `auth_sessions`),
/// which differ only in the table's name.
macro_rules! login_statements {
    ($t:literal) => {
        LoginStatements {
            evict: concat!(
                "DELETE FROM ",
                $t,
                " WHERE log_id = $1 AND device_id = $2 AND (expires_ms <= $3 \
                 OR n <= (SELECT COALESCE(MAX(n), 0) FROM ",
                $t,
                " WHERE log_id = $1 AND device_id = $2) - $4)"
            ),
            live: concat!("SELECT COUNT(*) FROM ", $t, " WHERE expires_ms > $1"),
            insert: concat!(
                "INSERT INTO ",
                $t,
                " (id, log_id, device_id, n, expires_ms) \
                 SELECT $1, $2, $3, COALESCE(MAX(n), 0) + 1, $4 FROM ",
                $t,
                " WHERE log_id = $2 AND device_id = $3"
            ),
            delete_device: concat!("DELETE FROM ", $t, " WHERE log_id = $1 AND device_id = $2"),
            sweep: concat!("DELETE FROM ", $t, " WHERE expires_ms <= $1"),
        }
    };
}

/// See [`login_statements`].
pub(crate) struct LoginStatements {
    /// Drops a device's expired rows and all but its newest `$4`.
    pub(crate) evict: &'static str,
    /// Live rows in the table.
    pub(crate) live: &'static str,
    /// Adds a row, numbered after the device's newest.
    pub(crate) insert: &'static str,
    /// Drops a device's rows.
    pub(crate) delete_device: &'static str,
    /// Drops expired rows.
    pub(crate) sweep: &'static str,
}

/// The statements for a login table.
pub(crate) fn login_sql(table: LoginTable) -> LoginStatements {
    match table {
        LoginTable::Challenges => login_statements!("auth_challenges"),
        LoginTable::Sessions => login_statements!("auth_sessions"),
    }
}

/// Both login tables.
pub(crate) const LOGIN_TABLES: [LoginTable; 2] = [LoginTable::Challenges, LoginTable::Sessions];

/// Decodes a stored login row (`log_id, device_id, expires_ms`).
pub(crate) fn login_row<R: sqlx::Row>(r: &R) -> Result<Login, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Login {
        log_id: id32(r.try_get(0)?)?,
        device_id: id32(r.try_get(1)?)?,
        expires_ms: r.try_get(2)?,
    })
}

/// Implements `RelayStore` for `$store` over database `$db`.
macro_rules! sql_store {
    ($store:ty, $db:ty, backend = $backend:literal, lock = $lock:literal, consume_prekey = $consume:literal) => {
        impl $crate::store::RelayStore for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn create_log<'a>(
                &'a self,
                log_id: Id32,
                genesis: &'a [u8],
                device_id: Id32,
                now: i64,
            ) -> BoxFuture<'a, StoreResult<()>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let r = sqlx::query(
                        "INSERT INTO logs (log_id, genesis, head_seq, first_seq, blob_bytes, created_ms) \
                         VALUES ($1, $2, 0, 1, 0, $3) ON CONFLICT (log_id) DO NOTHING",
                    )
                    .bind(&log_id.0[..])
                    .bind(genesis)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::LogExists);
                    }
                    sqlx::query(
                        "INSERT INTO devices (log_id, device_id, ordinal, revoked_ms, cursor_seq, created_ms) \
                         VALUES ($1, $2, 0, NULL, 0, $3)",
                    )
                    .bind(&log_id.0[..])
                    .bind(&device_id.0[..])
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn log_info(&self, log_id: Id32) -> BoxFuture<'_, StoreResult<Option<LogInfo>>> {
                Box::pin(async move {
                    let row = sqlx::query("SELECT genesis, head_seq, first_seq, root FROM logs WHERE log_id = $1")
                        .bind(&log_id.0[..])
                        .fetch_optional(&self.pool)
                        .await?;
                    match row {
                        None => Ok(None),
                        Some(r) => Ok(Some(LogInfo {
                            genesis: r.try_get(0)?,
                            head_seq: r.try_get(1)?,
                            first_seq: r.try_get(2)?,
                            root: r.try_get(3)?,
                        })),
                    }
                })
            }

            fn device(
                &self,
                log_id: Id32,
                device_id: Id32,
            ) -> BoxFuture<'_, StoreResult<Option<DeviceRow>>> {
                Box::pin(async move {
                    let row = sqlx::query(
                        "SELECT device_id, revoked_ms, cursor_seq FROM devices WHERE log_id = $1 AND device_id = $2",
                    )
                    .bind(&log_id.0[..])
                    .bind(&device_id.0[..])
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|r| {
                        Ok(DeviceRow {
                            device_id: id32(r.try_get(0)?)?,
                            revoked_ms: r.try_get(1)?,
                            cursor: r.try_get(2)?,
                        })
                    })
                    .transpose()
                })
            }

            fn devices(&self, log_id: Id32) -> BoxFuture<'_, StoreResult<Vec<DeviceRow>>> {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "SELECT device_id, revoked_ms, cursor_seq FROM devices WHERE log_id = $1 ORDER BY ordinal",
                    )
                    .bind(&log_id.0[..])
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter()
                        .map(|r| {
                            Ok(DeviceRow {
                                device_id: id32(r.try_get(0)?)?,
                                revoked_ms: r.try_get(1)?,
                                cursor: r.try_get(2)?,
                            })
                        })
                        .collect()
                })
            }

            fn add_device(
                &self,
                log_id: Id32,
                device_id: Id32,
                max_devices: usize,
                now: i64,
            ) -> BoxFuture<'_, StoreResult<DeviceAdded>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let head: Option<i64> =
                        sqlx::query_scalar(concat!("SELECT head_seq FROM logs WHERE log_id = $1", $lock))
                            .bind(&log_id.0[..])
                            .fetch_optional(&mut *tx)
                            .await?;
                    if head.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    let existing: Option<Option<i64>> = sqlx::query_scalar(
                        "SELECT revoked_ms FROM devices WHERE log_id = $1 AND device_id = $2",
                    )
                    .bind(&log_id.0[..])
                    .bind(&device_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    match existing {
                        Some(None) => return Ok(DeviceAdded::AlreadyPresent),
                        Some(Some(_)) => return Err(StoreError::DeviceRevoked),
                        None => {}
                    }
                    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE log_id = $1")
                        .bind(&log_id.0[..])
                        .fetch_one(&mut *tx)
                        .await?;
                    if count >= int(max_devices) {
                        return Err(StoreError::TooManyDevices);
                    }
                    sqlx::query(
                        "INSERT INTO devices (log_id, device_id, ordinal, revoked_ms, cursor_seq, created_ms) \
                         VALUES ($1, $2, $3, NULL, 0, $4)",
                    )
                    .bind(&log_id.0[..])
                    .bind(&device_id.0[..])
                    .bind(count)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(DeviceAdded::Added)
                })
            }

            fn revoke_device(
                &self,
                log_id: Id32,
                device_id: Id32,
                now: i64,
            ) -> BoxFuture<'_, StoreResult<()>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let head: Option<i64> =
                        sqlx::query_scalar(concat!("SELECT head_seq FROM logs WHERE log_id = $1", $lock))
                            .bind(&log_id.0[..])
                            .fetch_optional(&mut *tx)
                            .await?;
                    if head.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    let existing: Option<Option<i64>> = sqlx::query_scalar(
                        "SELECT revoked_ms FROM devices WHERE log_id = $1 AND device_id = $2",
                    )
                    .bind(&log_id.0[..])
                    .bind(&device_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    match existing {
                        None => return Err(StoreError::NotFound),
                        Some(Some(_)) => return Ok(()),
                        Some(None) => {}
                    }
                    let current: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM devices WHERE log_id = $1 AND revoked_ms IS NULL",
                    )
                    .bind(&log_id.0[..])
                    .fetch_one(&mut *tx)
                    .await?;
                    if current <= 1 {
                        return Err(StoreError::LastDevice);
                    }
                    sqlx::query("UPDATE devices SET revoked_ms = $3 WHERE log_id = $1 AND device_id = $2")
                        .bind(&log_id.0[..])
                        .bind(&device_id.0[..])
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    for table in $crate::store::sql::LOGIN_TABLES {
                        sqlx::query($crate::store::sql::login_sql(table).delete_device)
                            .bind(&log_id.0[..])
                            .bind(&device_id.0[..])
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn append_group<'a>(
                &'a self,
                jobs: &'a [AppendJob],
            ) -> BoxFuture<'a, StoreResult<Vec<AppendOutcome>>> {
                Box::pin(self.append_group_impl(jobs))
            }

            fn read_records(
                &self,
                log_id: Id32,
                after: i64,
                limit: u32,
                max_bytes: usize,
            ) -> BoxFuture<'_, StoreResult<RecordPage>> {
                Box::pin(async move {
                    // One statement (one snapshot, one round trip): the log row
                    // joined to the records after `after`; a log without such
                    // records yields one row of NULLs. The window runs over the
                    // lengths of at most `limit` records (never their bytes), so
                    // only the ciphertexts that can be returned are read.
                    let rows = sqlx::query(concat!(
                        "SELECT l.head_seq, l.first_seq, r.seq, r.epoch, r.author, r.nonce, r.ciphertext, \
                         r.stream_tag, r.expected_version \
                         FROM logs l LEFT JOIN (",
                        $crate::store::sql::bytes_window!(
                            "SELECT seq, LENGTH(ciphertext) AS n FROM records \
                             WHERE log_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                        ),
                        ") w ON w.before <= $4 OR w.rn <= 2 \
                         LEFT JOIN records r ON r.log_id = l.log_id AND r.seq = w.seq \
                         WHERE l.log_id = $1 ORDER BY w.seq"
                    ))
                    .bind(&log_id.0[..])
                    .bind(after)
                    .bind(i64::from(limit))
                    .bind(int(max_bytes))
                    .fetch_all(&self.pool)
                    .await?;
                    let first = rows.first().ok_or(StoreError::NotFound)?;
                    let head_seq: i64 = first.try_get(0)?;
                    let first_seq: i64 = first.try_get(1)?;
                    let mut records = Vec::with_capacity(rows.len());
                    for r in rows {
                        let Some(seq) = r.try_get::<Option<i64>, _>(2)? else { continue };
                        let tag: Option<Vec<u8>> = r.try_get(7)?;
                        let expected: Option<i64> = r.try_get(8)?;
                        records.push(RecordOut {
                            seq,
                            epoch: r.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
                            author: id32(r.try_get::<Option<Vec<u8>>, _>(4)?.unwrap_or_default())?,
                            nonce: HexBytes(r.try_get::<Option<Vec<u8>>, _>(5)?.unwrap_or_default()),
                            ciphertext: HexBytes(r.try_get::<Option<Vec<u8>>, _>(6)?.unwrap_or_default()),
                            guard: match (tag, expected) {
                                (Some(t), Some(v)) => Some(Guard {
                                    stream_tag: HexBytes(t),
                                    expected_version: v,
                                }),
                                _ => None,
                            },
                        });
                    }
                    Ok(RecordPage {
                        records,
                        head_seq,
                        first_seq,
                    })
                })
            }

            fn note_mailbox_cursors<'a>(
                &'a self,
                log_id: Id32,
                device_id: Id32,
                cursors: &'a [(Id32, i64)],
            ) -> BoxFuture<'a, StoreResult<()>> {
                Box::pin(async move {
                    let ahead: Vec<&(Id32, i64)> = cursors.iter().filter(|(_, a)| *a > 0).collect();
                    if ahead.is_empty() {
                        return Ok(());
                    }
                    // Most reads move nothing: find out without taking the write lock.
                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT mailbox_id, after_seq FROM mailbox_cursors WHERE device_id = ",
                    );
                    q.push_bind(&device_id.0[..]);
                    q.push(" AND mailbox_id IN (");
                    let mut list = q.separated(", ");
                    for (m, _) in &ahead {
                        list.push_bind(&m.0[..]);
                    }
                    list.push_unseparated(")");
                    let stored: std::collections::HashMap<Vec<u8>, i64> = q
                        .build_query_as::<(Vec<u8>, i64)>()
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .collect();
                    let moved: Vec<&(Id32, i64)> = ahead
                        .into_iter()
                        .filter(|(m, a)| stored.get(&m.0[..]).is_none_or(|s| a > s))
                        .collect();
                    if moved.is_empty() {
                        return Ok(());
                    }
                    let (_guard, mut tx) = self.begin_write().await?;
                    for (mailbox_id, after) in moved {
                        sqlx::query(
                            "INSERT INTO mailbox_cursors (mailbox_id, device_id, after_seq) \
                             SELECT mailbox_id, $2, $3 FROM mailboxes WHERE mailbox_id = $1 AND log_id = $4 \
                             ON CONFLICT (mailbox_id, device_id) DO UPDATE SET after_seq = excluded.after_seq \
                             WHERE excluded.after_seq > mailbox_cursors.after_seq",
                        )
                        .bind(&mailbox_id.0[..])
                        .bind(&device_id.0[..])
                        .bind(*after)
                        .bind(&log_id.0[..])
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn ack_cursor(
                &self,
                log_id: Id32,
                device_id: Id32,
                seq: i64,
            ) -> BoxFuture<'_, StoreResult<i64>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let head: i64 =
                        sqlx::query_scalar("SELECT head_seq FROM logs WHERE log_id = $1")
                            .bind(&log_id.0[..])
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or(StoreError::NotFound)?;
                    if seq > head {
                        return Err(StoreError::CursorAhead { seq, head });
                    }
                    let stored: i64 = sqlx::query_scalar(
                        "UPDATE devices SET cursor_seq = CASE WHEN cursor_seq < $3 THEN $3 ELSE cursor_seq END \
                         WHERE log_id = $1 AND device_id = $2 AND revoked_ms IS NULL RETURNING cursor_seq",
                    )
                    .bind(&log_id.0[..])
                    .bind(&device_id.0[..])
                    .bind(seq)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    tx.commit().await?;
                    Ok(stored)
                })
            }

            fn trim(&self, log_id: Id32, below: i64) -> BoxFuture<'_, StoreResult<i64>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let row = sqlx::query(concat!(
                        "SELECT head_seq, first_seq FROM logs WHERE log_id = $1",
                        $lock
                    ))
                    .bind(&log_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    let head: i64 = row.try_get(0)?;
                    let first: i64 = row.try_get(1)?;
                    if below > head {
                        return Err(StoreError::CursorAhead { seq: below, head });
                    }
                    if below <= first {
                        return Ok(first);
                    }
                    let min_cursor: Option<i64> = sqlx::query_scalar(
                        "SELECT MIN(cursor_seq) FROM devices WHERE log_id = $1 AND revoked_ms IS NULL",
                    )
                    .bind(&log_id.0[..])
                    .fetch_one(&mut *tx)
                    .await?;
                    let min_cursor = min_cursor.unwrap_or(0);
                    if min_cursor < below {
                        return Err(StoreError::NotAcknowledged { min_cursor });
                    }
                    sqlx::query("DELETE FROM records WHERE log_id = $1 AND seq < $2")
                        .bind(&log_id.0[..])
                        .bind(below)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE logs SET first_seq = $2 WHERE log_id = $1")
                        .bind(&log_id.0[..])
                        .bind(below)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(below)
                })
            }

            fn put_login(
                &self,
                table: LoginTable,
                id: [u8; 32],
                login: Login,
                caps: LoginCaps,
                now: i64,
            ) -> BoxFuture<'_, StoreResult<()>> {
                Box::pin(async move {
                    let sql = $crate::store::sql::login_sql(table);
                    let (log_id, device_id) = (&login.log_id.0[..], &login.device_id.0[..]);
                    let (_guard, mut tx) = self.begin_write().await?;
                    // The log's lock orders this against revoke_device.
                    let head: Option<i64> =
                        sqlx::query_scalar(concat!("SELECT head_seq FROM logs WHERE log_id = $1", $lock))
                            .bind(log_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let current: Option<Option<i64>> = sqlx::query_scalar(
                        "SELECT revoked_ms FROM devices WHERE log_id = $1 AND device_id = $2",
                    )
                    .bind(log_id)
                    .bind(device_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if head.is_none() || current != Some(None) {
                        return Err(StoreError::NotFound);
                    }
                    sqlx::query(sql.evict)
                        .bind(log_id)
                        .bind(device_id)
                        .bind(now)
                        .bind(int(caps.per_device.max(1) - 1))
                        .execute(&mut *tx)
                        .await?;
                    let live: i64 = sqlx::query_scalar(sql.live)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                    if live >= int(caps.total) {
                        return Err(StoreError::TooManyLogins);
                    }
                    sqlx::query(sql.insert)
                        .bind(&id[..])
                        .bind(log_id)
                        .bind(device_id)
                        .bind(login.expires_ms)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn take_challenge(
                &self,
                id: [u8; 32],
                now: i64,
            ) -> BoxFuture<'_, StoreResult<Option<Login>>> {
                Box::pin(async move {
                    // Anyone may answer with any bytes: a made-up challenge costs one
                    // read, never the write lock that appends wait on.
                    let known: Option<i64> =
                        sqlx::query_scalar("SELECT expires_ms FROM auth_challenges WHERE id = $1")
                            .bind(&id[..])
                            .fetch_optional(&self.pool)
                            .await?;
                    if known.is_none() {
                        return Ok(None);
                    }
                    let (_guard, mut tx) = self.begin_write().await?;
                    let row = sqlx::query(
                        "DELETE FROM auth_challenges WHERE id = $1 \
                         RETURNING log_id, device_id, expires_ms",
                    )
                    .bind(&id[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    let login = row.map(|r| $crate::store::sql::login_row(&r)).transpose()?;
                    Ok(login.filter(|l| l.expires_ms > now))
                })
            }

            fn session(&self, id: [u8; 32], now: i64) -> BoxFuture<'_, StoreResult<Option<Login>>> {
                Box::pin(async move {
                    let row = sqlx::query(
                        "SELECT log_id, device_id, expires_ms FROM auth_sessions \
                         WHERE id = $1 AND expires_ms > $2",
                    )
                    .bind(&id[..])
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|r| $crate::store::sql::login_row(&r)).transpose()
                })
            }

            fn register_mailbox(
                &self,
                log_id: Id32,
                mailbox_id: Id32,
                policy: MailboxPolicy,
                max_mailboxes: usize,
                now: i64,
            ) -> BoxFuture<'_, StoreResult<()>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let head: Option<i64> =
                        sqlx::query_scalar(concat!("SELECT head_seq FROM logs WHERE log_id = $1", $lock))
                            .bind(&log_id.0[..])
                            .fetch_optional(&mut *tx)
                            .await?;
                    if head.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    let owner: Option<Vec<u8>> =
                        sqlx::query_scalar("SELECT log_id FROM mailboxes WHERE mailbox_id = $1")
                            .bind(&mailbox_id.0[..])
                            .fetch_optional(&mut *tx)
                            .await?;
                    match owner {
                        Some(o) if o == log_id.0 => return Ok(()),
                        Some(_) => return Err(StoreError::MailboxTaken),
                        None => {}
                    }
                    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mailboxes WHERE log_id = $1")
                        .bind(&log_id.0[..])
                        .fetch_one(&mut *tx)
                        .await?;
                    if count >= int(max_mailboxes) {
                        return Err(StoreError::TooManyMailboxes);
                    }
                    sqlx::query(
                        "INSERT INTO mailboxes (mailbox_id, log_id, head_seq, created_ms, drop_oldest, single_use) \
                         VALUES ($1, $2, 0, $3, $4, $5)",
                    )
                    .bind(&mailbox_id.0[..])
                    .bind(&log_id.0[..])
                    .bind(now)
                    .bind(policy.drop_oldest)
                    .bind(policy.single_use)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn mailboxes(&self, log_id: Id32) -> BoxFuture<'_, StoreResult<Vec<(Id32, i64)>>> {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "SELECT mailbox_id, head_seq FROM mailboxes WHERE log_id = $1 ORDER BY created_ms, mailbox_id",
                    )
                    .bind(&log_id.0[..])
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter()
                        .map(|r| Ok((id32(r.try_get(0)?)?, r.try_get(1)?)))
                        .collect()
                })
            }

            fn post_envelope<'a>(&'a self, post: &'a EnvelopePost) -> BoxFuture<'a, StoreResult<Posted>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let posted = post_in(&mut tx, post).await?;
                    tx.commit().await?;
                    Ok(posted)
                })
            }

            fn put_device_list<'a>(
                &'a self,
                log_id: Id32,
                serial: u64,
                list: &'a [u8],
                entries: &'a [([u8; 32], u32)],
            ) -> BoxFuture<'a, StoreResult<()>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let exists: Option<i64> = sqlx::query_scalar(concat!(
                        "SELECT head_seq FROM logs WHERE log_id = $1",
                        $lock
                    ))
                    .bind(&log_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    // Serials are u64 on the wire and i64 here; one past i64 is refused
                    // as stale rather than wrapped.
                    let serial = i64::try_from(serial).map_err(|_| StoreError::StaleDeviceList)?;
                    let stored: Option<i64> =
                        sqlx::query_scalar("SELECT serial FROM device_lists WHERE log_id = $1")
                            .bind(&log_id.0[..])
                            .fetch_optional(&mut *tx)
                            .await?;
                    if stored.is_some_and(|s| s >= serial) {
                        return Err(StoreError::StaleDeviceList);
                    }
                    sqlx::query(
                        "INSERT INTO device_lists (log_id, serial, list) VALUES ($1, $2, $3) \
                         ON CONFLICT (log_id) DO UPDATE SET serial = $2, list = $3",
                    )
                    .bind(&log_id.0[..])
                    .bind(serial)
                    .bind(list)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM listed_devices WHERE log_id = $1")
                        .bind(&log_id.0[..])
                        .execute(&mut *tx)
                        .await?;
                    for (device, generation) in entries {
                        sqlx::query(
                            "INSERT INTO listed_devices (log_id, device_id, generation) \
                             VALUES ($1, $2, $3)",
                        )
                        .bind(&log_id.0[..])
                        .bind(&device[..])
                        .bind(i64::from(*generation))
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn device_list(&self, mailbox_id: Id32) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
                Box::pin(async move {
                    let owner: Vec<u8> =
                        sqlx::query_scalar("SELECT log_id FROM mailboxes WHERE mailbox_id = $1")
                            .bind(&mailbox_id.0[..])
                            .fetch_optional(&self.pool)
                            .await?
                            .ok_or(StoreError::NotFound)?;
                    Ok(sqlx::query_scalar("SELECT list FROM device_lists WHERE log_id = $1")
                        .bind(&owner)
                        .fetch_optional(&self.pool)
                        .await?)
                })
            }

            fn post_device_envelopes<'a>(
                &'a self,
                post: &'a DevicePost,
            ) -> BoxFuture<'a, StoreResult<Posted>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let owner: Vec<u8> =
                        sqlx::query_scalar("SELECT log_id FROM mailboxes WHERE mailbox_id = $1")
                            .bind(&post.post.mailbox_id.0[..])
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or(StoreError::NotFound)?;
                    // The owner's log first (the lock order of every post), so the
                    // list cannot change between the check and the copies.
                    sqlx::query(concat!("SELECT log_id FROM logs WHERE log_id = $1", $lock))
                        .bind(&owner)
                        .execute(&mut *tx)
                        .await?;
                    let listed = sqlx::query(
                        "SELECT device_id, generation FROM listed_devices WHERE log_id = $1",
                    )
                    .bind(&owner)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|r| {
                        let generation: i64 = r.try_get(1)?;
                        Ok((id32(r.try_get(0)?)?.0, u32::try_from(generation).unwrap_or(u32::MAX)))
                    })
                    .collect::<StoreResult<Vec<([u8; 32], u32)>>>()?;
                    if listed.is_empty() {
                        return Err(StoreError::NoDeviceList);
                    }
                    // A retry of a post that was stored (its answer lost) is a
                    // duplicate even if the list changed since.
                    let mut stored = 0;
                    for (device, _, payload) in &post.copies {
                        let copy = chorus_relay_api::copy_id(post.post.envelope_id, device);
                        let existing: Option<Vec<u8>> = sqlx::query_scalar(
                            "SELECT payload FROM envelopes WHERE mailbox_id = $1 AND envelope_id = $2",
                        )
                        .bind(&post.post.mailbox_id.0[..])
                        .bind(&copy.0[..])
                        .fetch_optional(&mut *tx)
                        .await?;
                        stored += usize::from(existing.as_deref() == Some(payload.as_slice()));
                    }
                    let named: Vec<([u8; 32], u32)> =
                        post.copies.iter().map(|(d, g, _)| (d.0, *g)).collect();
                    let mismatch = chorus_wire::Mismatch::between(&listed, &named);
                    if !mismatch.is_empty() && stored < post.copies.len() {
                        return Err(StoreError::DeviceMismatch(mismatch));
                    }
                    let mut last = None;
                    let mut all_duplicate = true;
                    for (device, _, payload) in &post.copies {
                        let copy = EnvelopePost {
                            mailbox_id: post.post.mailbox_id,
                            envelope_id: chorus_relay_api::copy_id(post.post.envelope_id, device),
                            claim: None,
                            payload: payload.clone(),
                            recipient: Some(*device),
                            now: post.post.now,
                            expires_ms: post.post.expires_ms,
                            max_depth: post.post.max_depth,
                            quota: post.post.quota,
                        };
                        let posted = post_in(&mut tx, &copy).await?;
                        all_duplicate &= posted.duplicate;
                        last = Some(posted);
                    }
                    tx.commit().await?;
                    let mut posted = last.ok_or(StoreError::NoDeviceList)?;
                    posted.duplicate = all_duplicate;
                    Ok(posted)
                })
            }

            fn append_bundle<'a>(
                &'a self,
                job: &'a AppendJob,
                post: &'a EnvelopePost,
            ) -> BoxFuture<'a, StoreResult<BundleOutcome>> {
                Box::pin(self.append_bundle_impl(job, post))
            }

            fn read_envelopes(
                &self,
                log_id: Id32,
                mailbox_id: Id32,
                reader: Id32,
                after: i64,
                limit: u32,
                max_bytes: usize,
            ) -> BoxFuture<'_, StoreResult<Vec<EnvelopeOut>>> {
                Box::pin(async move {
                    let owner: Option<Vec<u8>> =
                        sqlx::query_scalar("SELECT log_id FROM mailboxes WHERE mailbox_id = $1")
                            .bind(&mailbox_id.0[..])
                            .fetch_optional(&self.pool)
                            .await?;
                    if owner.as_deref() != Some(&log_id.0[..]) {
                        return Err(StoreError::NotFound);
                    }
                    let rows = sqlx::query(concat!(
                        "SELECT e.seq, e.envelope_id, e.payload, e.received_ms FROM (",
                        $crate::store::sql::bytes_window!(
                            "SELECT seq, LENGTH(payload) AS n FROM envelopes \
                             WHERE mailbox_id = $1 AND seq > $2 \
                             AND (recipient IS NULL OR recipient = $5) ORDER BY seq LIMIT $3"
                        ),
                        ") w JOIN envelopes e ON e.mailbox_id = $1 AND e.seq = w.seq \
                         WHERE w.before <= $4 OR w.rn <= 2 ORDER BY e.seq"
                    ))
                    .bind(&mailbox_id.0[..])
                    .bind(after)
                    .bind(i64::from(limit))
                    .bind(int(max_bytes))
                    .bind(&reader.0[..])
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter()
                        .map(|r| {
                            Ok(EnvelopeOut {
                                seq: r.try_get(0)?,
                                envelope_id: id16(r.try_get(1)?)?,
                                payload: HexBytes(r.try_get(2)?),
                                received_ms: r.try_get(3)?,
                            })
                        })
                        .collect()
                })
            }

            fn publish_prekeys<'a>(
                &'a self,
                log_id: Id32,
                address: Id32,
                keys: &'a PublishPrekeysRequest,
                max_stored: u32,
                now: i64,
            ) -> BoxFuture<'a, StoreResult<PrekeyCount>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let owner: Option<Vec<u8>> = sqlx::query_scalar(concat!(
                        "SELECT log_id FROM prekey_addresses WHERE address = $1",
                        $lock
                    ))
                    .bind(&address.0[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    match owner {
                        Some(o) if o != log_id.0 => return Err(StoreError::AddressTaken),
                        Some(_) => {}
                        None => {
                            let exists: Option<i64> =
                                sqlx::query_scalar("SELECT head_seq FROM logs WHERE log_id = $1")
                                    .bind(&log_id.0[..])
                                    .fetch_optional(&mut *tx)
                                    .await?;
                            if exists.is_none() {
                                return Err(StoreError::NotFound);
                            }
                            sqlx::query(
                                "INSERT INTO prekey_addresses (address, log_id, signed_prekey, pq_last_resort, updated_ms) \
                                 VALUES ($1, $2, NULL, NULL, $3)",
                            )
                            .bind(&address.0[..])
                            .bind(&log_id.0[..])
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    sqlx::query(
                        "UPDATE prekey_addresses SET signed_prekey = COALESCE($2, signed_prekey), \
                         pq_last_resort = COALESCE($3, pq_last_resort), updated_ms = $4 WHERE address = $1",
                    )
                    .bind(&address.0[..])
                    .bind(keys.signed_prekey.as_ref().map(|k| k.0.as_slice()))
                    .bind(keys.pq_last_resort.as_ref().map(|k| k.0.as_slice()))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if keys.replace_one_time {
                        sqlx::query("DELETE FROM one_time_prekeys WHERE address = $1")
                            .bind(&address.0[..])
                            .execute(&mut *tx)
                            .await?;
                    }
                    let before = count_one_time(&mut *tx, address).await?;
                    if before.one_time + int(keys.one_time.len()) > i64::from(max_stored)
                        || before.one_time_pq + int(keys.one_time_pq.len()) > i64::from(max_stored)
                    {
                        return Err(StoreError::TooManyPrekeys);
                    }
                    for (kind, list) in [(0i64, &keys.one_time), (1i64, &keys.one_time_pq)] {
                        for k in list {
                            sqlx::query("INSERT INTO one_time_prekeys (address, kind, prekey) VALUES ($1, $2, $3)")
                                .bind(&address.0[..])
                                .bind(kind)
                                .bind(k.0.as_slice())
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    let after = count_one_time(&mut *tx, address).await?;
                    tx.commit().await?;
                    Ok(after)
                })
            }

            fn withdraw_prekeys(
                &self,
                log_id: Id32,
                address: Id32,
                now: i64,
            ) -> BoxFuture<'_, StoreResult<bool>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let ours: Option<Vec<u8>> = sqlx::query_scalar(
                        "UPDATE prekey_addresses SET signed_prekey = NULL, pq_last_resort = NULL, updated_ms = $3
                         WHERE address = $1 AND log_id = $2 RETURNING address",
                    )
                    .bind(&address.0[..])
                    .bind(&log_id.0[..])
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if ours.is_some() {
                        sqlx::query("DELETE FROM one_time_prekeys WHERE address = $1")
                            .bind(&address.0[..])
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(ours.is_some())
                })
            }

            fn fetch_prekeys(
                &self,
                address: Id32,
            ) -> BoxFuture<'_, StoreResult<Option<PrekeyBundle>>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let Some(row) = sqlx::query(
                        "SELECT signed_prekey, pq_last_resort FROM prekey_addresses WHERE address = $1",
                    )
                    .bind(&address.0[..])
                    .fetch_optional(&mut *tx)
                    .await?
                    else {
                        return Ok(None);
                    };
                    let signed: Option<Vec<u8>> = row.try_get(0)?;
                    let last_resort: Option<Vec<u8>> = row.try_get(1)?;
                    // Withdrawn (or never given a signed prekey): nothing to start with.
                    if signed.is_none() {
                        return Ok(None);
                    }
                    let mut taken = [None, None];
                    for (kind, slot) in taken.iter_mut().enumerate() {
                        let k: Option<Vec<u8>> = sqlx::query_scalar($consume)
                            .bind(&address.0[..])
                            .bind(int(kind))
                            .fetch_optional(&mut *tx)
                            .await?;
                        *slot = k;
                    }
                    tx.commit().await?;
                    let [one_time, one_time_pq] = taken;
                    let pq_is_last_resort = one_time_pq.is_none() && last_resort.is_some();
                    Ok(Some(PrekeyBundle {
                        signed_prekey: signed.map(HexBytes),
                        one_time: one_time.map(HexBytes),
                        pq: one_time_pq.or(last_resort).map(HexBytes),
                        pq_is_last_resort,
                    }))
                })
            }

            fn count_prekeys(
                &self,
                log_id: Id32,
                address: Id32,
            ) -> BoxFuture<'_, StoreResult<PrekeyCount>> {
                Box::pin(async move {
                    let mut conn = self.pool.acquire().await?;
                    let owner: Option<Vec<u8>> =
                        sqlx::query_scalar("SELECT log_id FROM prekey_addresses WHERE address = $1")
                            .bind(&address.0[..])
                            .fetch_optional(&mut *conn)
                            .await?;
                    if owner.as_deref() != Some(&log_id.0[..]) {
                        return Err(StoreError::NotFound);
                    }
                    count_one_time(&mut *conn, address).await
                })
            }

            fn put_blob<'a>(
                &'a self,
                log_id: Id32,
                blob_id: Id32,
                data: &'a [u8],
                quota: u64,
                now: i64,
            ) -> BoxFuture<'a, StoreResult<i64>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let used: i64 = sqlx::query_scalar(concat!(
                        "SELECT blob_bytes FROM logs WHERE log_id = $1",
                        $lock
                    ))
                    .bind(&log_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    let old: i64 = sqlx::query_scalar("SELECT size FROM blobs WHERE log_id = $1 AND blob_id = $2")
                        .bind(&log_id.0[..])
                        .bind(&blob_id.0[..])
                        .fetch_optional(&mut *tx)
                        .await?
                        .unwrap_or(0);
                    let new_used = used - old + int(data.len());
                    let quota = int(quota);
                    if new_used > quota {
                        return Err(StoreError::QuotaExceeded { used, quota });
                    }
                    sqlx::query(
                        "INSERT INTO blobs (log_id, blob_id, data, size, created_ms) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (log_id, blob_id) DO UPDATE SET data = excluded.data, size = excluded.size, \
                         created_ms = excluded.created_ms",
                    )
                    .bind(&log_id.0[..])
                    .bind(&blob_id.0[..])
                    .bind(data)
                    .bind(int(data.len()))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE logs SET blob_bytes = $2 WHERE log_id = $1")
                        .bind(&log_id.0[..])
                        .bind(new_used)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(new_used)
                })
            }

            fn blob(
                &self,
                log_id: Id32,
                blob_id: Id32,
            ) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
                Box::pin(async move {
                    Ok(sqlx::query_scalar("SELECT data FROM blobs WHERE log_id = $1 AND blob_id = $2")
                        .bind(&log_id.0[..])
                        .bind(&blob_id.0[..])
                        .fetch_optional(&self.pool)
                        .await?)
                })
            }

            fn delete_blob(&self, log_id: Id32, blob_id: Id32) -> BoxFuture<'_, StoreResult<bool>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let deleted = delete_blob_in(&mut tx, log_id, &blob_id.0).await?;
                    tx.commit().await?;
                    Ok(deleted)
                })
            }

            fn put_file_part<'a>(&'a self, p: FilePart<'a>) -> BoxFuture<'a, StoreResult<i64>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let used: i64 = sqlx::query_scalar(concat!(
                        "SELECT file_bytes FROM logs WHERE log_id = $1",
                        $lock
                    ))
                    .bind(&p.log_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    // A locator is the first uploader's: no other log may add to the
                    // file or replace a part of it.
                    let owner: Option<Vec<u8>> = sqlx::query_scalar(
                        "SELECT log_id FROM file_parts WHERE locator = $1 LIMIT 1",
                    )
                    .bind(&p.locator.0[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    if owner.is_some_and(|o| o != p.log_id.0) {
                        return Err(StoreError::FileTaken);
                    }
                    let old: i64 = sqlx::query_scalar(
                        "SELECT size FROM file_parts WHERE locator = $1 AND part = $2",
                    )
                    .bind(&p.locator.0[..])
                    .bind(i64::from(p.part))
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(0);
                    // `size` holds what the part is charged, which the sweep gives back.
                    let charge = int(p.data.len().max(crate::limits::MIN_FILE_PART_CHARGE));
                    let new_used = used - old + charge;
                    let quota = int(p.quota);
                    if new_used > quota {
                        return Err(StoreError::QuotaExceeded { used, quota });
                    }
                    sqlx::query(
                        "INSERT INTO file_parts (locator, part, log_id, data, size, expires_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (locator, part) DO UPDATE SET data = excluded.data, \
                         size = excluded.size, expires_ms = excluded.expires_ms",
                    )
                    .bind(&p.locator.0[..])
                    .bind(i64::from(p.part))
                    .bind(&p.log_id.0[..])
                    .bind(p.data)
                    .bind(charge)
                    .bind(p.expires_ms)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE logs SET file_bytes = $2 WHERE log_id = $1")
                        .bind(&p.log_id.0[..])
                        .bind(new_used)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(new_used)
                })
            }

            fn file_part(
                &self,
                locator: Id32,
                part: u32,
            ) -> BoxFuture<'_, StoreResult<Option<StoredPart>>> {
                Box::pin(async move {
                    Ok(sqlx::query_as(
                        "SELECT data, expires_ms FROM file_parts WHERE locator = $1 AND part = $2",
                    )
                    .bind(&locator.0[..])
                    .bind(i64::from(part))
                    .fetch_optional(&self.pool)
                    .await?)
                })
            }

            fn roll_root<'a>(
                &'a self,
                log_id: Id32,
                (genesis_root, current): ([u8; 32], [u8; 32]),
                new: [u8; 32],
            ) -> BoxFuture<'a, StoreResult<bool>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let rolled: Option<Vec<u8>> = sqlx::query_scalar(
                        "UPDATE logs SET root = $2 WHERE log_id = $1 AND COALESCE(root, $3) = $4 RETURNING log_id",
                    )
                    .bind(&log_id.0[..])
                    .bind(&new[..])
                    .bind(&genesis_root[..])
                    .bind(&current[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(rolled.is_some())
                })
            }

            fn put_recovery_kit<'a>(
                &'a self,
                log_id: Id32,
                slot: Id32,
                kit: &'a [u8],
            ) -> BoxFuture<'a, StoreResult<()>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let owner: Option<Vec<u8>> =
                        sqlx::query_scalar("SELECT log_id FROM recovery_slots WHERE slot_id = $1")
                            .bind(&slot.0[..])
                            .fetch_optional(&mut *tx)
                            .await?;
                    if owner.is_some_and(|o| o != log_id.0) {
                        return Err(StoreError::SlotTaken);
                    }
                    // The same slot and kit again (a retry, or a replayed authorization):
                    // nothing changes, the state stays.
                    let same: Option<Vec<u8>> = sqlx::query_scalar(
                        "SELECT slot_id FROM recovery_slots WHERE log_id = $1 AND slot_id = $2 AND kit = $3",
                    )
                    .bind(&log_id.0[..])
                    .bind(&slot.0[..])
                    .bind(kit)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if same.is_some() {
                        return Ok(());
                    }
                    let old: Option<Option<Vec<u8>>> = sqlx::query_scalar(
                        "DELETE FROM recovery_slots WHERE log_id = $1 RETURNING checkpoint",
                    )
                    .bind(&log_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(Some(old)) = old {
                        delete_blob_in(&mut tx, log_id, &old).await?;
                    }
                    sqlx::query("INSERT INTO recovery_slots (slot_id, log_id, kit) VALUES ($1, $2, $3)")
                        .bind(&slot.0[..])
                        .bind(&log_id.0[..])
                        .bind(kit)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn put_recovery_state<'a>(
                &'a self,
                log_id: Id32,
                state: &'a [u8],
                checkpoint: Id32,
            ) -> BoxFuture<'a, StoreResult<()>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let old: Option<Vec<u8>> = sqlx::query_scalar(concat!(
                        "SELECT checkpoint FROM recovery_slots WHERE log_id = $1",
                        $lock
                    ))
                    .bind(&log_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    let named: Option<i64> =
                        sqlx::query_scalar("SELECT size FROM blobs WHERE log_id = $1 AND blob_id = $2")
                            .bind(&log_id.0[..])
                            .bind(&checkpoint.0[..])
                            .fetch_optional(&mut *tx)
                            .await?;
                    if named.is_none() {
                        return Err(StoreError::NotFound);
                    }
                    sqlx::query("UPDATE recovery_slots SET state = $2, checkpoint = $3 WHERE log_id = $1")
                        .bind(&log_id.0[..])
                        .bind(state)
                        .bind(&checkpoint.0[..])
                        .execute(&mut *tx)
                        .await?;
                    if let Some(old) = old.filter(|o| o[..] != checkpoint.0[..]) {
                        delete_blob_in(&mut tx, log_id, &old).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn recovery(&self, slot: Id32) -> BoxFuture<'_, StoreResult<Option<RecoverySlot>>> {
                Box::pin(async move {
                    type Row = (Vec<u8>, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
                    let row: Option<Row> = sqlx::query_as(
                        "SELECT log_id, kit, state, checkpoint FROM recovery_slots WHERE slot_id = $1",
                    )
                    .bind(&slot.0[..])
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|(log_id, kit, state, checkpoint)| {
                        Ok(RecoverySlot {
                            log_id: id32(log_id)?,
                            kit: HexBytes(kit),
                            state: state.map(HexBytes),
                            checkpoint: checkpoint.map(id32).transpose()?,
                        })
                    })
                    .transpose()
                })
            }

            fn create_channel(
                &self,
                channel_id: Id32,
                now: i64,
                expires_ms: i64,
            ) -> BoxFuture<'_, StoreResult<()>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    // An expired channel with the same id is gone already.
                    delete_channel(&mut tx, channel_id, Some(now)).await?;
                    let r = sqlx::query(
                        "INSERT INTO channels (channel_id, expires_ms, head_seq) VALUES ($1, $2, 0) \
                         ON CONFLICT (channel_id) DO NOTHING",
                    )
                    .bind(&channel_id.0[..])
                    .bind(expires_ms)
                    .execute(&mut *tx)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::ChannelExists);
                    }
                    tx.commit().await?;
                    Ok(())
                })
            }

            fn post_channel<'a>(
                &'a self,
                channel_id: Id32,
                payload: &'a [u8],
                now: i64,
            ) -> BoxFuture<'a, StoreResult<i64>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let row = sqlx::query(concat!(
                        "SELECT head_seq, expires_ms FROM channels WHERE channel_id = $1",
                        $lock
                    ))
                    .bind(&channel_id.0[..])
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                    let head: i64 = row.try_get(0)?;
                    let expires: i64 = row.try_get(1)?;
                    if expires <= now {
                        return Err(StoreError::NotFound);
                    }
                    if head >= i64::from(MAX_RENDEZVOUS_MESSAGES) {
                        return Err(StoreError::ChannelFull);
                    }
                    let seq = head + 1;
                    sqlx::query("INSERT INTO channel_messages (channel_id, seq, payload) VALUES ($1, $2, $3)")
                        .bind(&channel_id.0[..])
                        .bind(seq)
                        .bind(payload)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE channels SET head_seq = $2 WHERE channel_id = $1")
                        .bind(&channel_id.0[..])
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(seq)
                })
            }

            fn read_channel(
                &self,
                channel_id: Id32,
                after: i64,
                now: i64,
            ) -> BoxFuture<'_, StoreResult<Vec<(i64, Vec<u8>)>>> {
                Box::pin(async move {
                    let expires: i64 =
                        sqlx::query_scalar("SELECT expires_ms FROM channels WHERE channel_id = $1")
                            .bind(&channel_id.0[..])
                            .fetch_optional(&self.pool)
                            .await?
                            .ok_or(StoreError::NotFound)?;
                    if expires <= now {
                        return Err(StoreError::NotFound);
                    }
                    let rows = sqlx::query(
                        "SELECT seq, payload FROM channel_messages WHERE channel_id = $1 AND seq > $2 ORDER BY seq",
                    )
                    .bind(&channel_id.0[..])
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?;
                    rows.into_iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                        .collect()
                })
            }

            fn close_channel(&self, channel_id: Id32) -> BoxFuture<'_, StoreResult<bool>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    let gone = delete_channel(&mut tx, channel_id, None).await?;
                    tx.commit().await?;
                    Ok(gone)
                })
            }

            fn sweep(&self, now: i64) -> BoxFuture<'_, StoreResult<Swept>> {
                Box::pin(async move {
                    let (_guard, mut tx) = self.begin_write().await?;
                    // Expired envelopes leave their logs' quotas first.
                    sqlx::query(concat!(
                        "UPDATE logs SET envelope_bytes = envelope_bytes - d.bytes FROM ( \
                           SELECT m.log_id AS log_id, CAST(SUM(LENGTH(e.payload)) AS BIGINT) AS bytes \
                           FROM envelopes e JOIN mailboxes m ON m.mailbox_id = e.mailbox_id \
                           WHERE ",
                        $crate::store::sql::sweepable!(),
                        " GROUP BY m.log_id) AS d \
                         WHERE logs.log_id = d.log_id"
                    ))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let envelopes = sqlx::query(concat!(
                        "DELETE FROM envelopes AS e WHERE ",
                        $crate::store::sql::sweepable!()
                    ))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query(
                        "DELETE FROM channel_messages WHERE channel_id IN \
                         (SELECT channel_id FROM channels WHERE expires_ms <= $1)",
                    )
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    // Expired file parts leave their logs' file quotas, then go.
                    sqlx::query(
                        "UPDATE logs SET file_bytes = file_bytes - d.bytes FROM ( \
                           SELECT log_id, CAST(SUM(size) AS BIGINT) AS bytes FROM file_parts \
                           WHERE expires_ms <= $1 GROUP BY log_id) AS d \
                         WHERE logs.log_id = d.log_id",
                    )
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let file_parts = sqlx::query("DELETE FROM file_parts WHERE expires_ms <= $1")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    let channels = sqlx::query("DELETE FROM channels WHERE expires_ms <= $1")
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    for table in $crate::store::sql::LOGIN_TABLES {
                        sqlx::query($crate::store::sql::login_sql(table).sweep)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(Swept {
                        envelopes,
                        file_parts,
                        channels,
                    })
                })
            }

            fn publish<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, StoreResult<()>> {
                Box::pin(self.publish_events(events))
            }

            fn listen(&self, bus: broadcast::Sender<Event>) -> BoxFuture<'_, StoreResult<()>> {
                Box::pin(self.listen_events(bus))
            }

            fn append_workers(&self) -> usize {
                self.workers
            }
        }

        /// Posts inside a write transaction (see [`RelayStore::post_envelope`]); an
        /// error leaves the transaction to be rolled back.
        async fn post_in(
            tx: &mut sqlx::Transaction<'static, $db>,
            post: &EnvelopePost,
        ) -> StoreResult<Posted> {
            let EnvelopePost {
                mailbox_id,
                envelope_id,
                claim,
                ref payload,
                recipient,
                now,
                expires_ms,
                max_depth,
                quota: envelope_quota,
            } = *post;
            let payload = payload.as_slice();
            // Lock order everywhere: logs (by id), then mailboxes. A post changes its
            // owner's envelope bytes, so it takes the owner's log first; a bundled
            // send holds its author's log too, and two people sending each other
            // bundles at once must not each hold the log the other needs.
            let owner: Vec<u8> =
                sqlx::query_scalar("SELECT log_id FROM mailboxes WHERE mailbox_id = $1")
                    .bind(&mailbox_id.0[..])
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
            sqlx::query(concat!("SELECT log_id FROM logs WHERE log_id = $1", $lock))
                .bind(&owner)
                .execute(&mut **tx)
                .await?;
            let mb = sqlx::query(concat!(
                "SELECT log_id, head_seq, drop_oldest, single_use, first_envelope \
                 FROM mailboxes WHERE mailbox_id = $1",
                $lock
            ))
            .bind(&mailbox_id.0[..])
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let log_id = id32(mb.try_get(0)?)?;
            let head: i64 = mb.try_get(1)?;
            let drop_oldest: bool = mb.try_get(2)?;
            let single_use: bool = mb.try_get(3)?;
            let first: Option<Vec<u8>> = mb.try_get(4)?;
            let existing = sqlx::query(
                "SELECT seq, payload FROM envelopes WHERE mailbox_id = $1 AND envelope_id = $2",
            )
            .bind(&mailbox_id.0[..])
            .bind(&envelope_id.0[..])
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(e) = existing {
                let stored: Vec<u8> = e.try_get(1)?;
                if stored != payload {
                    return Err(StoreError::EnvelopeConflict);
                }
                return Ok(Posted {
                    log_id,
                    seq: e.try_get(0)?,
                    duplicate: true,
                });
            }
            if single_use {
                match first {
                    None => {
                        sqlx::query("UPDATE mailboxes SET first_envelope = $2 WHERE mailbox_id = $1")
                            .bind(&mailbox_id.0[..])
                            .bind(&envelope_id.0[..])
                            .execute(&mut **tx)
                            .await?;
                    }
                    Some(first)
                        if first == envelope_id.0
                            || claim.is_some_and(|c| first == c.0) => {}
                    Some(_) => return Err(StoreError::MailboxSpent),
                }
            }
            let depth: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM envelopes WHERE mailbox_id = $1 AND expires_ms > $2",
            )
            .bind(&mailbox_id.0[..])
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
            let over = depth - i64::from(max_depth) + 1;
            if over > 0 {
                if !drop_oldest {
                    return Err(StoreError::MailboxFull);
                }
                // A first-contact mailbox makes room: its oldest go first.
                let dropped: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(LENGTH(payload)), 0) AS BIGINT) FROM envelopes \
                     WHERE mailbox_id = $1 AND seq IN (SELECT seq FROM envelopes \
                       WHERE mailbox_id = $1 AND expires_ms > $3 ORDER BY seq LIMIT $2)",
                )
                .bind(&mailbox_id.0[..])
                .bind(over)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
                sqlx::query(
                    "DELETE FROM envelopes WHERE mailbox_id = $1 AND seq IN (SELECT seq FROM envelopes \
                       WHERE mailbox_id = $1 AND expires_ms > $3 ORDER BY seq LIMIT $2)",
                )
                .bind(&mailbox_id.0[..])
                .bind(over)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                sqlx::query("UPDATE logs SET envelope_bytes = envelope_bytes - $2 WHERE log_id = $1")
                    .bind(&log_id.0[..])
                    .bind(dropped)
                    .execute(&mut **tx)
                    .await?;
            }
            // The log's quota, counted over all its mailboxes.
            let used: i64 = sqlx::query_scalar("SELECT envelope_bytes FROM logs WHERE log_id = $1")
                .bind(&log_id.0[..])
                .fetch_one(&mut **tx)
                .await?;
            let size = int(payload.len());
            let quota = i64::try_from(envelope_quota).unwrap_or(i64::MAX);
            if used.saturating_add(size) > quota {
                return Err(StoreError::EnvelopeQuotaExceeded);
            }
            sqlx::query("UPDATE logs SET envelope_bytes = envelope_bytes + $2 WHERE log_id = $1")
                .bind(&log_id.0[..])
                .bind(size)
                .execute(&mut **tx)
                .await?;
            let seq = head + 1;
            sqlx::query(
                "INSERT INTO envelopes \
                 (mailbox_id, seq, envelope_id, payload, received_ms, expires_ms, recipient) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&mailbox_id.0[..])
            .bind(seq)
            .bind(&envelope_id.0[..])
            .bind(payload)
            .bind(now)
            .bind(expires_ms)
            .bind(recipient.map(|r| r.0.to_vec()))
            .execute(&mut **tx)
            .await?;
            sqlx::query("UPDATE mailboxes SET head_seq = $2 WHERE mailbox_id = $1")
                .bind(&mailbox_id.0[..])
                .bind(seq)
                .execute(&mut **tx)
                .await?;
            Ok(Posted {
                log_id,
                seq,
                duplicate: false,
            })
        }

        async fn count_one_time(
            conn: &mut <$db as sqlx::Database>::Connection,
            address: Id32,
        ) -> StoreResult<PrekeyCount> {
            let rows = sqlx::query(
                "SELECT kind, COUNT(*) FROM one_time_prekeys WHERE address = $1 GROUP BY kind",
            )
            .bind(&address.0[..])
            .fetch_all(&mut *conn)
            .await?;
            let mut count = PrekeyCount {
                one_time: 0,
                one_time_pq: 0,
            };
            for r in rows {
                let kind: i64 = r.try_get(0)?;
                let n: i64 = r.try_get(1)?;
                if kind == 0 {
                    count.one_time = n;
                } else {
                    count.one_time_pq = n;
                }
            }
            Ok(count)
        }

        /// Deletes a blob of the log and gives its bytes back to the log's quota.
        async fn delete_blob_in(
            tx: &mut sqlx::Transaction<'static, $db>,
            log_id: Id32,
            blob_id: &[u8],
        ) -> StoreResult<bool> {
            let size: Option<i64> = sqlx::query_scalar(
                "DELETE FROM blobs WHERE log_id = $1 AND blob_id = $2 RETURNING size",
            )
            .bind(&log_id.0[..])
            .bind(blob_id)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(size) = size else { return Ok(false) };
            sqlx::query("UPDATE logs SET blob_bytes = blob_bytes - $2 WHERE log_id = $1")
                .bind(&log_id.0[..])
                .bind(size)
                .execute(&mut **tx)
                .await?;
            Ok(true)
        }

        async fn delete_channel(
            tx: &mut sqlx::Transaction<'static, $db>,
            channel_id: Id32,
            only_expired_at: Option<i64>,
        ) -> StoreResult<bool> {
            let cutoff = only_expired_at.unwrap_or(i64::MAX);
            let r = sqlx::query("DELETE FROM channels WHERE channel_id = $1 AND expires_ms <= $2")
                .bind(&channel_id.0[..])
                .bind(cutoff)
                .execute(&mut **tx)
                .await?;
            if r.rows_affected() > 0 {
                sqlx::query("DELETE FROM channel_messages WHERE channel_id = $1")
                    .bind(&channel_id.0[..])
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(r.rows_affected() > 0)
        }
    };
}

pub(crate) use sql_store;
