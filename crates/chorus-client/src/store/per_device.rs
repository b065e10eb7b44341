//! `per-device`: what belongs to this device alone and never goes into the log — its
//! own prekeys (the bundle at its per-device address), each contact's device list as
//! last accepted, the pairwise sessions with the contacts' devices, and a pending
//! send's copies once encrypted. Secrets are sealed to their row; what to do with
//! them is `chorus_core::per_device`'s decision and `device/per_device.rs`'s I/O.

use std::collections::BTreeMap;

use chorus_core::per_device::{Pairwise, PeerSessions};
use chorus_core::{PrekeyPrivate, PrekeyStore, Session};
use chorus_crypto::{OneTimePrekeySecret, PqPrekeySecret, RootPublicKey, SignedPrekeySecret};
use chorus_wire::DeviceList;
use sqlx::SqliteConnection;
use zeroize::Zeroize;

use super::Store;
use crate::ClientError;
use crate::identity::secret_bytes;
use crate::store::log_state::signed;

/// The id of this device's per-device signed prekey (its bundle holds one of each).
pub(crate) const SIGNED_ID: u32 = 1;
/// The id of its last-resort ML-KEM prekey.
pub(crate) const PQ_ID: u32 = 2;

/// This device's per-device prekeys: a signed prekey and a last-resort ML-KEM prekey,
/// with their public halves as published. No `Debug`.
pub(crate) struct DevicePrekeys {
    signed: SignedPrekeySecret,
    pq: PqPrekeySecret,
    /// `chorus_wire::SignedPrekey`, encoded.
    pub(crate) signed_public: Vec<u8>,
    /// `chorus_wire::PqPrekey`, encoded.
    pub(crate) pq_public: Vec<u8>,
}

impl PrekeyStore for DevicePrekeys {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPrekeySecret> {
        (id == SIGNED_ID).then_some(&self.signed)
    }
    fn one_time_prekey(&self, _: u32) -> Option<&OneTimePrekeySecret> {
        None
    }
    fn pq_prekey(&self, id: u32) -> Option<(&PqPrekeySecret, bool)> {
        (id == PQ_ID).then_some((&self.pq, true))
    }
}

/// The pairwise sessions with one contact device (the one sent on first), and their
/// bookkeeping.
pub(crate) struct PairwiseRow {
    pub(crate) meta: Pairwise,
    pub(crate) sessions: PeerSessions,
}

/// `pairwise_sessions`: device, peer generation, session generation, retired, sealed.
type PairwiseTuple = (Vec<u8>, i64, i64, Option<i64>, Vec<u8>);

fn pairwise_id(contact: &[u8; 32], device: &[u8; 32], generation: u64) -> String {
    format!(
        "{}/{}/{generation}",
        hex::encode(contact),
        hex::encode(device)
    )
}

fn u32_of(n: i64, what: &str) -> Result<u32, ClientError> {
    u32::try_from(n).map_err(|_| ClientError::Corrupt(what.into()))
}

fn u64_of(n: i64, what: &str) -> Result<u64, ClientError> {
    u64::try_from(n).map_err(|_| ClientError::Corrupt(what.into()))
}

impl Store {
    /// This device's per-device prekeys, once minted.
    pub(crate) async fn device_prekeys(&self) -> Result<Option<DevicePrekeys>, ClientError> {
        let rows: Vec<(i64, String, Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT id, kind, public, sealed FROM device_prekeys ORDER BY id")
                .fetch_all(self.pool())
                .await?;
        let (mut signed, mut pq) = (None, None);
        for (id, kind, public, sealed) in rows {
            let secret = self.open_sealed("device_prekey", &format!("{id}/{kind}"), &sealed)?;
            match (
                PrekeyPrivate::decode(&secret),
                u32_of(id, "device prekey id")?,
            ) {
                (Some(PrekeyPrivate::Signed(s)), SIGNED_ID) => signed = Some((s, public)),
                (Some(PrekeyPrivate::Pq(s)), PQ_ID) => pq = Some((s, public)),
                _ => return Err(ClientError::Corrupt("device prekey".into())),
            }
        }
        Ok(match (signed, pq) {
            (Some((signed, signed_public)), Some((pq, pq_public))) => Some(DevicePrekeys {
                signed,
                pq,
                signed_public,
                pq_public,
            }),
            (None, None) => None,
            _ => {
                return Err(ClientError::Corrupt(
                    "device prekeys: one is missing".into(),
                ));
            }
        })
    }

    /// Stores this device's per-device prekeys (once: a second call changes nothing).
    pub(crate) async fn put_device_prekeys(
        &self,
        signed: (SignedPrekeySecret, Vec<u8>),
        pq: (PqPrekeySecret, Vec<u8>),
    ) -> Result<(), ClientError> {
        let mut tx = self.begin().await?;
        let rows = [
            (
                SIGNED_ID,
                "signed",
                PrekeyPrivate::Signed(signed.0),
                signed.1,
            ),
            (PQ_ID, "pq", PrekeyPrivate::Pq(pq.0), pq.1),
        ];
        for (id, kind, secret, public) in rows {
            let sealed = self.seal(
                "device_prekey",
                &format!("{id}/{kind}"),
                &secret_bytes(&secret)?,
            );
            sqlx::query(
                "INSERT OR IGNORE INTO device_prekeys (id, kind, public, sealed) VALUES ($1, $2, $3, $4)",
            )
            .bind(i64::from(id))
            .bind(kind)
            .bind(public)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The serial of the last device list this device saw at the relay naming every
    /// device of the roster (nothing left to publish until the roster changes).
    pub(crate) async fn listed_serial(&self) -> Result<Option<u64>, ClientError> {
        let value: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'per_device_listed'")
                .fetch_optional(self.pool())
                .await?;
        Ok(value.and_then(|v| {
            <[u8; 8]>::try_from(v.as_slice())
                .ok()
                .map(u64::from_be_bytes)
        }))
    }

    /// Remembers [`Self::listed_serial`].
    pub(crate) async fn set_listed_serial(&self, serial: u64) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('per_device_listed', $1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(&serial.to_be_bytes()[..])
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The contact's device list as last accepted, verified again under `root`.
    pub(crate) async fn contact_device_list(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
        root: &RootPublicKey,
    ) -> Result<Option<DeviceList>, ClientError> {
        let list: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT list FROM contact_device_lists WHERE contact = $1")
                .bind(&contact[..])
                .fetch_optional(&mut *conn)
                .await?;
        list.map(|l| {
            DeviceList::decode(&l, root)
                .map_err(|_| ClientError::Corrupt("contact device list".into()))
        })
        .transpose()
    }

    /// Keeps `list` as the contact's accepted device list.
    pub(crate) async fn put_contact_device_list(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
        list: &DeviceList,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO contact_device_lists (contact, serial, list) VALUES ($1, $2, $3)
             ON CONFLICT(contact) DO UPDATE SET serial = excluded.serial, list = excluded.list",
        )
        .bind(&contact[..])
        .bind(signed(list.serial))
        .bind(list.encode())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Records that the contact's newer list dropped `device` (listed at `generation`)
    /// as of `dropped_ms` (the first drop is kept: a device is dropped once), and
    /// forgets drops older than `forget_before` (nothing they sent is read any more:
    /// `per_device::first_copy`), so a contact that keeps changing its list cannot
    /// grow the table without bound.
    pub(crate) async fn put_dropped_device(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
        device: &[u8; 32],
        generation: u32,
        dropped_ms: u64,
        forget_before: u64,
    ) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM contact_dropped_devices WHERE dropped_ms < $1")
            .bind(signed(forget_before))
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO contact_dropped_devices (contact, device, generation, dropped_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT(contact, device)
             DO UPDATE SET dropped_ms = min(dropped_ms, excluded.dropped_ms)",
        )
        .bind(&contact[..])
        .bind(&device[..])
        .bind(i64::from(generation))
        .bind(signed(dropped_ms))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// A device the contact's list dropped: the generation it was listed at and when.
    pub(crate) async fn dropped_device(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
        device: &[u8; 32],
    ) -> Result<Option<(u32, u64)>, ClientError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT generation, dropped_ms FROM contact_dropped_devices
             WHERE contact = $1 AND device = $2",
        )
        .bind(&contact[..])
        .bind(&device[..])
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|(g, at)| {
            Ok((
                u32::try_from(g).map_err(|_| ClientError::Corrupt("dropped device".into()))?,
                u64::try_from(at).map_err(|_| ClientError::Corrupt("dropped device".into()))?,
            ))
        })
        .transpose()
    }

    /// Every pairwise session with the contact's devices, by device.
    pub(crate) async fn pairwise(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
    ) -> Result<BTreeMap<[u8; 32], PairwiseRow>, ClientError> {
        let rows: Vec<PairwiseTuple> = sqlx::query_as(
            "SELECT device, peer_generation, generation, retired_ms, sealed
             FROM pairwise_sessions WHERE contact = $1",
        )
        .bind(&contact[..])
        .fetch_all(&mut *conn)
        .await?;
        let mut out = BTreeMap::new();
        for (device, peer_generation, generation, retired_ms, sealed) in rows {
            let device = <[u8; 32]>::try_from(device.as_slice())
                .map_err(|_| ClientError::Corrupt("pairwise device".into()))?;
            let generation = u64_of(generation, "pairwise generation")?;
            let opened = self.open_sealed(
                "pairwise",
                &pairwise_id(contact, &device, generation),
                &sealed,
            )?;
            let mut snapshots: Vec<(u64, Vec<u8>)> = postcard::from_bytes(&opened)
                .map_err(|_| ClientError::Corrupt("pairwise sessions".into()))?;
            let restored = snapshots
                .iter()
                .map(|(g, snapshot)| Session::restore(snapshot, *g))
                .collect::<Result<Vec<_>, _>>();
            snapshots.iter_mut().for_each(|(_, s)| s.zeroize());
            let sessions = PeerSessions::from_sessions(restored?)
                .ok_or_else(|| ClientError::Corrupt("pairwise sessions: none".into()))?;
            let meta = Pairwise {
                generation: u32_of(peer_generation, "pairwise peer generation")?,
                retired_ms: retired_ms.map(|r| u64_of(r, "retired")).transpose()?,
            };
            out.insert(device, PairwiseRow { meta, sessions });
        }
        Ok(out)
    }

    /// Writes (or replaces) the pairwise session with one contact device.
    pub(crate) async fn put_pairwise(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
        device: &[u8; 32],
        row: &PairwiseRow,
    ) -> Result<(), ClientError> {
        let all = row.sessions.sessions();
        let generation = all.first().map_or(0, Session::generation);
        let snapshots: Vec<(u64, zeroize::Zeroizing<Vec<u8>>)> =
            all.iter().map(|s| (s.generation(), s.snapshot())).collect();
        let encoded: Vec<(u64, &[u8])> = snapshots.iter().map(|(g, s)| (*g, &s[..])).collect();
        let sealed = self.seal(
            "pairwise",
            &pairwise_id(contact, device, generation),
            &secret_bytes(&encoded)?,
        );
        sqlx::query(
            "INSERT INTO pairwise_sessions
               (contact, device, peer_generation, generation, retired_ms, sealed)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT(contact, device) DO UPDATE SET peer_generation = excluded.peer_generation,
               generation = excluded.generation, retired_ms = excluded.retired_ms,
               sealed = excluded.sealed",
        )
        .bind(&contact[..])
        .bind(&device[..])
        .bind(i64::from(row.meta.generation))
        .bind(signed(generation))
        .bind(row.meta.retired_ms.map(signed))
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Deletes the pairwise session with one contact device.
    pub(crate) async fn drop_pairwise(
        &self,
        conn: &mut SqliteConnection,
        contact: &[u8; 32],
        device: &[u8; 32],
    ) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM pairwise_sessions WHERE contact = $1 AND device = $2")
            .bind(&contact[..])
            .bind(&device[..])
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// How many current pairwise sessions this device holds, over all contacts.
    pub(crate) async fn pairwise_count(&self) -> Result<i64, ClientError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM pairwise_sessions WHERE retired_ms IS NULL")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// A pending send's copies (a `PostDeviceEnvelopesRequest`, JSON), once encrypted.
    pub(crate) async fn pending_copies<'e, E: sqlx::SqliteExecutor<'e>>(
        &self,
        executor: E,
        envelope_id: &[u8; 16],
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let copies: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT copies FROM pending_sends WHERE envelope_id = $1")
                .bind(&envelope_id[..])
                .fetch_optional(executor)
                .await?;
        Ok(copies.flatten())
    }

    /// Sets (or, with `None`, clears) a pending send's copies.
    pub(crate) async fn set_pending_copies(
        &self,
        conn: &mut SqliteConnection,
        envelope_id: &[u8; 16],
        copies: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        sqlx::query("UPDATE pending_sends SET copies = $2 WHERE envelope_id = $1")
            .bind(&envelope_id[..])
            .bind(copies)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
