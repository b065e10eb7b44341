//! The storage contract: one trait, two backends, one conformance suite.
//!
//! [`RelayStore`] is everything the relay persists. Each method is one
//! transaction and documents its contract; `tests/conformance.rs` runs the same
//! scenarios over HTTP against [`SqliteStore`] and [`PostgresStore`]. Methods take
//! `now` as an argument instead of reading a clock, so expiry is a pure function of
//! inputs (see [`crate::clock`]).
//!
//! Appends are the hot path: the relay gathers concurrent append requests and
//! hands them to [`RelayStore::append_group`] together, which commits them in one
//! transaction (group commit, see `batcher.rs`). Each request in a group
//! still succeeds or fails on its own.
//!
//! Cross-process wake-ups (several relay processes over one PostgreSQL database)
//! go through [`RelayStore::publish`] and [`RelayStore::listen`]; SQLite has a
//! single process and makes them no-ops.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::api::{
    EnvelopeOut, FailedGuard, Id16, Id32, PrekeyBundle, PrekeyCount, PublishPrekeysRequest,
    RecordIn, RecordOut, RecoverySlot,
};
use crate::error::StoreResult;

mod postgres;
mod sql;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A log as stored.
#[derive(Clone, Debug)]
pub struct LogInfo {
    /// Genesis bytes.
    pub genesis: Vec<u8>,
    /// Highest seq.
    pub head_seq: i64,
    /// Lowest seq still stored.
    pub first_seq: i64,
    /// The root the identity rolled to, once it did (`None`: the genesis's).
    pub root: Option<Vec<u8>>,
}

/// A device row.
#[derive(Clone, Debug)]
pub struct DeviceRow {
    /// Public key.
    pub device_id: Id32,
    /// When it was revoked.
    pub revoked_ms: Option<i64>,
    /// Acknowledged cursor.
    pub cursor: i64,
}

/// What adding a device did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceAdded {
    /// Newly registered.
    Added,
    /// It was already current (linking is idempotent).
    AlreadyPresent,
}

/// One append request inside a group commit.
#[derive(Clone, Debug)]
pub struct AppendJob {
    /// The log.
    pub log_id: Id32,
    /// The authenticated device (stamped as author).
    pub author: Id32,
    /// The records, all or none.
    pub records: Vec<RecordIn>,
    /// Most records the log may store once these are in ([`crate::Limits::max_records_per_log`]).
    pub max_records: u64,
}

/// Why one append in a group was refused (the others are unaffected).
#[derive(Clone, Debug, PartialEq)]
pub enum AppendRejection {
    /// No such log.
    NoLog,
    /// The author is not a current device of the log.
    NotCurrent,
    /// Guards failed; nothing appended.
    Guards(Vec<FailedGuard>),
    /// A record is sealed under an epoch older than the log's (or than an earlier
    /// record of the same job); nothing appended.
    ///
    /// Raised for a device that has not read a rotation yet: the old epoch's key
    /// may be held by a revoked device, so nothing sealed under it may follow the
    /// rotation. The device reads the log and seals again under the new epoch.
    StaleEpoch {
        /// Index of the first such record in the job.
        index: usize,
        /// Its epoch.
        epoch: i64,
        /// The epoch it fell behind: the log's, counting earlier records of the job.
        current: i64,
    },
    /// A record is sealed under an epoch more than one past the log's (or an earlier
    /// record's of the same job); nothing appended. Epochs move one at a time (a
    /// rotation starts the next): a device skipping ahead would leave the others
    /// refusing records under an epoch nobody holds a key to.
    EpochJump {
        /// Index of the first such record in the job.
        index: usize,
        /// Its epoch.
        epoch: i64,
        /// The epoch before it.
        current: i64,
    },
    /// The log would store more than its quota of records; nothing appended.
    Quota,
}

impl AppendJob {
    /// Whether a log at `head` whose lowest stored record is `first_seq` has room
    /// for this job's records.
    pub(crate) fn fits(&self, head: i64, first_seq: i64) -> bool {
        let stored = head
            .saturating_sub(first_seq.max(1))
            .saturating_add(1)
            .max(0);
        let after = u64::try_from(stored)
            .unwrap_or(0)
            .saturating_add(self.records.len() as u64);
        after <= self.max_records
    }

    /// The epoch a log at epoch `current` is at once this job's records are in, or
    /// why not: [`AppendRejection::StaleEpoch`] for the first record under an older
    /// epoch than the log's or an earlier record's (epochs never go back, within a job
    /// or across jobs), [`AppendRejection::EpochJump`] for one more than one ahead.
    pub(crate) fn epoch_after(&self, current: i64) -> Result<i64, AppendRejection> {
        let mut at = current;
        for (index, r) in self.records.iter().enumerate() {
            if r.epoch < at {
                return Err(AppendRejection::StaleEpoch {
                    index,
                    epoch: r.epoch,
                    current: at,
                });
            }
            if r.epoch > at.saturating_add(1) {
                return Err(AppendRejection::EpochJump {
                    index,
                    epoch: r.epoch,
                    current: at,
                });
            }
            at = r.epoch;
        }
        Ok(at)
    }
}

/// Outcome of one append: the seqs given, or why not.
pub type AppendOutcome = Result<Vec<i64>, AppendRejection>;

/// The outcome of a bundled send: the records' seqs and the post, or why the append
/// was refused (a refused post is the store's error).
pub type BundleOutcome = Result<(Vec<i64>, Posted), AppendRejection>;

/// A page of records.
#[derive(Clone, Debug)]
pub struct RecordPage {
    /// Records after the requested seq, as [`RelayStore::read_records`] cuts them.
    pub records: Vec<RecordOut>,
    /// Head.
    pub head_seq: i64,
    /// First stored.
    pub first_seq: i64,
}

/// What posting an envelope did.
#[derive(Clone, Copy, Debug)]
pub struct Posted {
    /// The owning log (for waking its devices).
    pub log_id: Id32,
    /// The envelope's seq.
    pub seq: i64,
    /// Whether it was already stored.
    pub duplicate: bool,
}

/// An envelope to post, and the bounds it is posted under.
#[derive(Clone, Debug)]
pub struct EnvelopePost {
    /// The mailbox.
    pub mailbox_id: Id32,
    /// The sender's idempotency key.
    pub envelope_id: Id16,
    /// For a single-use mailbox: the id of the first envelope its sender posted.
    pub claim: Option<Id16>,
    /// The envelope bytes.
    pub payload: Vec<u8>,
    /// The one device of the mailbox's identity that may read it (a `per-device`
    /// copy); `None`: every device.
    pub recipient: Option<Id32>,
    /// Now.
    pub now: i64,
    /// When it expires.
    pub expires_ms: i64,
    /// Most unexpired envelopes the mailbox holds ([`crate::Limits::mailbox_depth`]).
    pub max_depth: u32,
    /// Most envelope bytes the owning log holds ([`crate::Limits::envelope_quota_bytes`]).
    pub quota: u64,
}

/// A `per-device` post: one message, a copy per device of the mailbox's identity.
#[derive(Debug)]
pub struct DevicePost {
    /// The mailbox, the message's id, its expiry and the limits, as for one envelope
    /// (`payload` and `recipient` unused).
    pub post: EnvelopePost,
    /// (device, generation, bytes) per copy.
    pub copies: Vec<(Id32, u32, Vec<u8>)>,
}

/// A rendezvous message: seq and bytes.
pub type ChannelRow = (i64, Vec<u8>);

/// What a sweep deleted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Swept {
    /// Expired envelopes.
    pub envelopes: u64,
    /// Expired file parts.
    pub file_parts: u64,
    /// Expired rendezvous channels.
    pub channels: u64,
}

/// A stored file part: its bytes and when it expires.
pub type StoredPart = (Vec<u8>, i64);

/// One part of a file to store ([`RelayStore::put_file_part`]).
#[derive(Debug)]
pub struct FilePart<'a> {
    /// The uploading log (whose quota it counts against).
    pub log_id: Id32,
    /// The file's locator.
    pub locator: Id32,
    /// The part's index.
    pub part: u32,
    /// The encrypted part.
    pub data: &'a [u8],
    /// When the sweep deletes it.
    pub expires_ms: i64,
    /// The log's file quota.
    pub quota: u64,
}

/// How a mailbox takes envelopes from people who are not yet contacts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxPolicy {
    /// When full, drop the oldest envelope instead of refusing (intro and
    /// invitation mailboxes: anyone may write to them).
    pub drop_oldest: bool,
    /// Take envelopes from the first sender only (an invitation): later posts must
    /// be the first envelope or carry its id as their claim.
    pub single_use: bool,
}

/// A login: which device of which log, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Login {
    /// The log the device belongs to.
    pub log_id: Id32,
    /// The device.
    pub device_id: Id32,
    /// When it stops working.
    pub expires_ms: i64,
}

/// Which of the two login tables: outstanding challenges, or sessions (keyed by
/// the SHA-256 of their token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginTable {
    /// Challenges issued and not yet answered.
    Challenges,
    /// Session tokens issued.
    Sessions,
}

/// How many live rows a login table holds: in all, and per device (a device at
/// its cap loses its oldest row to a new one, so one device can never fill the
/// table and lock the others out).
#[derive(Clone, Copy, Debug)]
pub struct LoginCaps {
    /// Live rows in the whole table.
    pub total: usize,
    /// Rows of one device.
    pub per_device: usize,
}

/// Something devices may need to hear about, in this process or another.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t")]
pub enum Event {
    /// A log's head moved.
    LogAppended {
        /// The log.
        log_id: Id32,
        /// New head.
        head_seq: i64,
    },
    /// An envelope arrived in a mailbox owned by `log_id`.
    MailboxPosted {
        /// The owning log.
        log_id: Id32,
        /// The mailbox.
        mailbox_id: Id32,
        /// The envelope's seq.
        seq: i64,
    },
    /// A device was revoked: drop its sessions and close its socket.
    DeviceRevoked {
        /// The log.
        log_id: Id32,
        /// The device.
        device_id: Id32,
    },
    /// A device sent a heartbeat to another process (presence is shared this
    /// way, never stored).
    Heartbeat {
        /// The log.
        log_id: Id32,
        /// The device.
        device_id: Id32,
        /// When, by that process's clock.
        at_ms: i64,
    },
    /// Notifications may have been lost (listener reconnected): re-read everything.
    Resync,
}

/// Everything the relay stores. Each method is atomic.
pub trait RelayStore: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Creates a log with its genesis and first device. `LogExists` if the id is taken.
    fn create_log<'a>(
        &'a self,
        log_id: Id32,
        genesis: &'a [u8],
        device_id: Id32,
        now: i64,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The log's genesis, head and first stored seq.
    fn log_info(&self, log_id: Id32) -> BoxFuture<'_, StoreResult<Option<LogInfo>>>;

    /// One device of a log.
    fn device(
        &self,
        log_id: Id32,
        device_id: Id32,
    ) -> BoxFuture<'_, StoreResult<Option<DeviceRow>>>;

    /// Every device of a log, in registration order.
    fn devices(&self, log_id: Id32) -> BoxFuture<'_, StoreResult<Vec<DeviceRow>>>;

    /// Registers a device. Idempotent for a current device; `DeviceRevoked` for a
    /// revoked one; `TooManyDevices` at the bound.
    fn add_device(
        &self,
        log_id: Id32,
        device_id: Id32,
        max_devices: usize,
        now: i64,
    ) -> BoxFuture<'_, StoreResult<DeviceAdded>>;

    /// Revokes a device (idempotent) and deletes its challenges and sessions.
    /// `LastDevice` if it is the only current one.
    fn revoke_device(
        &self,
        log_id: Id32,
        device_id: Id32,
        now: i64,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Appends each job atomically in one transaction. Per job: the author must be
    /// current; no record may be under an epoch older than the log's (the highest
    /// ever appended, kept with the head since records may be trimmed) or than an
    /// earlier record of the same job ([`AppendRejection::StaleEpoch`]); every guard
    /// must match the stream's version (counting earlier records of the same job);
    /// else nothing of that job is appended. Seqs are
    /// consecutive and gap-free per log. Jobs are applied in the given order.
    /// The store itself tells other relay processes about moved heads (as part of
    /// the transaction where it can), so no separate [`RelayStore::publish`].
    fn append_group<'a>(
        &'a self,
        jobs: &'a [AppendJob],
    ) -> BoxFuture<'a, StoreResult<Vec<AppendOutcome>>>;

    /// Records with seq > `after`, ascending, at most `limit`, cut by bytes: every
    /// record whose ciphertext still ends within `max_bytes` (counting from the first
    /// returned), then the first that does not, and always at least the first two.
    /// That is enough for the relay's pager to make a page of at most `max_bytes`
    /// and tell whether more follow, without reading the ciphertexts beyond it.
    fn read_records(
        &self,
        log_id: Id32,
        after: i64,
        limit: u32,
        max_bytes: usize,
    ) -> BoxFuture<'_, StoreResult<RecordPage>>;

    /// Moves a device's cursor forward (never back); returns the stored cursor.
    fn ack_cursor(
        &self,
        log_id: Id32,
        device_id: Id32,
        seq: i64,
    ) -> BoxFuture<'_, StoreResult<i64>>;

    /// Records how far a device of `log_id` has read each of the log's mailboxes
    /// named (forward only; a mailbox of another log is ignored). The sweep keeps an
    /// expired envelope until every current device has read past it.
    fn note_mailbox_cursors<'a>(
        &'a self,
        log_id: Id32,
        device_id: Id32,
        cursors: &'a [(Id32, i64)],
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Deletes records with seq < `below`, if every current device's cursor is at
    /// least `below - 1`. Returns the new first stored seq.
    fn trim(&self, log_id: Id32, below: i64) -> BoxFuture<'_, StoreResult<i64>>;

    /// Stores a login row (a challenge, or a session under its token's hash) for
    /// a device that is current, first dropping the device's expired rows and its
    /// oldest beyond `caps.per_device - 1`. `NotFound` if the device is not
    /// current; `TooManyLogins` when `caps.total` live rows are held. A session is
    /// stored under the log's lock, as [`RelayStore::revoke_device`] deletes the
    /// device's rows: a revocation can never be overtaken by a login that checked
    /// the device before it.
    fn put_login(
        &self,
        table: LoginTable,
        id: [u8; 32],
        login: Login,
        caps: LoginCaps,
        now: i64,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Takes a live challenge: it answers at most once.
    fn take_challenge(&self, id: [u8; 32], now: i64) -> BoxFuture<'_, StoreResult<Option<Login>>>;

    /// The live session stored under a token's hash.
    fn session(&self, id: [u8; 32], now: i64) -> BoxFuture<'_, StoreResult<Option<Login>>>;

    /// Registers a mailbox under a log (idempotent for the same log).
    /// `TooManyMailboxes` when the log already has `max_mailboxes`.
    fn register_mailbox(
        &self,
        log_id: Id32,
        mailbox_id: Id32,
        policy: MailboxPolicy,
        max_mailboxes: usize,
        now: i64,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// The log's mailboxes and their heads.
    fn mailboxes(&self, log_id: Id32) -> BoxFuture<'_, StoreResult<Vec<(Id32, i64)>>>;

    /// Posts an envelope: idempotent by envelope id (same bytes → same seq,
    /// `duplicate`); `EnvelopeConflict` for the same id with other bytes;
    /// `MailboxFull` when `max_depth` unexpired envelopes are held; for a
    /// single-use mailbox, `MailboxSpent` unless it is the first envelope, or
    /// `claim` names the first.
    fn post_envelope<'a>(&'a self, post: &'a EnvelopePost) -> BoxFuture<'a, StoreResult<Posted>>;

    /// The bundled send: appends `job` as [`RelayStore::append_group`] would and posts
    /// `post` as [`RelayStore::post_envelope`] would, in one transaction. A refused
    /// append posts nothing (`Ok(Err(..))`); a refused post appends nothing (the
    /// post's error).
    fn append_bundle<'a>(
        &'a self,
        job: &'a AppendJob,
        post: &'a EnvelopePost,
    ) -> BoxFuture<'a, StoreResult<BundleOutcome>>;

    /// Stored envelopes with seq > `after` of a mailbox owned by `log_id`
    /// (`NotFound` otherwise), at most `limit`, cut by payload bytes as
    /// [`RelayStore::read_records`] cuts by ciphertext bytes. An envelope past its
    /// TTL is read until the sweep deletes it (which waits for every current device
    /// to have read past it).
    fn read_envelopes(
        &self,
        log_id: Id32,
        mailbox_id: Id32,
        reader: Id32,
        after: i64,
        limit: u32,
        max_bytes: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<EnvelopeOut>>>;

    /// Replaces `log_id`'s signed device list (already verified under its root) and
    /// its entries. `StaleDeviceList` unless `serial` is above the stored one.
    fn put_device_list<'a>(
        &'a self,
        log_id: Id32,
        serial: u64,
        list: &'a [u8],
        entries: &'a [([u8; 32], u32)],
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The signed device list of the identity owning `mailbox_id` (`NotFound` for an
    /// unknown mailbox, `None` when it publishes none).
    fn device_list(&self, mailbox_id: Id32) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>>;

    /// Posts a copy per device in one transaction, each as
    /// [`RelayStore::post_envelope`] would under [`chorus_relay_api::copy_id`], readable
    /// only by its device. `NoDeviceList` when the owner publishes none;
    /// `DeviceMismatch` (nothing stored) unless the copies name exactly its listed
    /// devices at their generations. The answer is the last copy's seq, duplicate
    /// when every copy was.
    fn post_device_envelopes<'a>(
        &'a self,
        post: &'a DevicePost,
    ) -> BoxFuture<'a, StoreResult<Posted>>;

    /// Empties `log_id`'s entry at `address` (the identity rolled away from the key it
    /// names): nothing is handed out there any more, and the address stays the log's,
    /// so nobody else can claim it. `false` if the log holds no entry there.
    fn withdraw_prekeys(
        &self,
        log_id: Id32,
        address: Id32,
        now: i64,
    ) -> BoxFuture<'_, StoreResult<bool>>;

    /// Adds prekeys for an address, claiming it for `log_id` on first use.
    fn publish_prekeys<'a>(
        &'a self,
        log_id: Id32,
        address: Id32,
        keys: &'a PublishPrekeysRequest,
        max_stored: u32,
        now: i64,
    ) -> BoxFuture<'a, StoreResult<PrekeyCount>>;

    /// A bundle for an address, consuming exactly one one-time key of each kind
    /// (atomically, even under concurrent fetches); `None` if unknown.
    fn fetch_prekeys(&self, address: Id32) -> BoxFuture<'_, StoreResult<Option<PrekeyBundle>>>;

    /// How many one-time keys remain for an address owned by `log_id`.
    fn count_prekeys(&self, log_id: Id32, address: Id32)
    -> BoxFuture<'_, StoreResult<PrekeyCount>>;

    /// Stores (or replaces) a blob within the log's quota; returns bytes used.
    fn put_blob<'a>(
        &'a self,
        log_id: Id32,
        blob_id: Id32,
        data: &'a [u8],
        quota: u64,
        now: i64,
    ) -> BoxFuture<'a, StoreResult<i64>>;

    /// A blob's bytes.
    fn blob(&self, log_id: Id32, blob_id: Id32) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>>;

    /// Deletes a blob; false if absent.
    fn delete_blob(&self, log_id: Id32, blob_id: Id32) -> BoxFuture<'_, StoreResult<bool>>;

    /// Stores one part of a file (or replaces it, for the log that stored it) within
    /// the log's file quota; returns the file bytes the log now holds. A locator
    /// holding another log's file is refused (`FileTaken`).
    fn put_file_part<'a>(&'a self, part: FilePart<'a>) -> BoxFuture<'a, StoreResult<i64>>;

    /// A file part's bytes and when it expires (anyone who knows the locator).
    fn file_part(&self, locator: Id32, part: u32)
    -> BoxFuture<'_, StoreResult<Option<StoredPart>>>;

    /// Moves the log's root from `current` (where `None` in the row stands for
    /// `genesis_root`) to `new`; `false`, changing nothing, if the log's root is not
    /// `current` (a concurrent roll won). The roots are `(genesis_root, current)`.
    fn roll_root<'a>(
        &'a self,
        log_id: Id32,
        roots: ([u8; 32], [u8; 32]),
        new: [u8; 32],
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// Sets the log's recovery slot to `slot` with `kit`, replacing any earlier slot
    /// of the log (its state goes, and the checkpoint blob it named is deleted). The
    /// same slot and kit again change nothing. `SlotTaken` if another log holds `slot`.
    fn put_recovery_kit<'a>(
        &'a self,
        log_id: Id32,
        slot: Id32,
        kit: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Replaces the state of the log's recovery slot; the checkpoint blob the previous
    /// state named is deleted if it is another. `NotFound` if the log has no slot or
    /// no blob `checkpoint`.
    fn put_recovery_state<'a>(
        &'a self,
        log_id: Id32,
        state: &'a [u8],
        checkpoint: Id32,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The recovery slot named `slot`.
    fn recovery(&self, slot: Id32) -> BoxFuture<'_, StoreResult<Option<RecoverySlot>>>;

    /// Opens a rendezvous channel until `expires_ms`.
    /// `ChannelExists` if a live channel has this id.
    fn create_channel(
        &self,
        channel_id: Id32,
        now: i64,
        expires_ms: i64,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Adds a message to a live channel; returns its seq.
    fn post_channel<'a>(
        &'a self,
        channel_id: Id32,
        payload: &'a [u8],
        now: i64,
    ) -> BoxFuture<'a, StoreResult<i64>>;

    /// Messages of a live channel after `after`.
    fn read_channel(
        &self,
        channel_id: Id32,
        after: i64,
        now: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<ChannelRow>>>;

    /// Deletes a channel and its messages; false if absent.
    fn close_channel(&self, channel_id: Id32) -> BoxFuture<'_, StoreResult<bool>>;

    /// Deletes expired envelopes, channels, challenges and sessions.
    fn sweep(&self, now: i64) -> BoxFuture<'_, StoreResult<Swept>>;

    /// Tells other relay processes about events (no-op for a single process).
    fn publish<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, StoreResult<()>>;

    /// Starts forwarding other processes' events into `bus`; returns once
    /// listening (no-op for a single process).
    fn listen(&self, bus: broadcast::Sender<Event>) -> BoxFuture<'_, StoreResult<()>>;

    /// How many append jobs to run concurrently (group-commit workers).
    fn append_workers(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HexBytes;

    fn job(epochs: &[i64]) -> AppendJob {
        AppendJob {
            log_id: Id32([1; 32]),
            author: Id32([2; 32]),
            records: epochs
                .iter()
                .map(|&epoch| RecordIn {
                    epoch,
                    nonce: HexBytes(Vec::new()),
                    ciphertext: HexBytes(Vec::new()),
                    guard: None,
                })
                .collect(),
            max_records: u64::MAX,
        }
    }

    #[test]
    fn records_at_or_after_the_log_epoch_move_it_to_the_last() {
        assert_eq!(job(&[0, 0]).epoch_after(0), Ok(0));
        assert_eq!(job(&[2, 2, 3]).epoch_after(2), Ok(3));
    }

    #[test]
    fn a_record_more_than_one_epoch_ahead_is_refused() {
        assert_eq!(
            job(&[2, 4]).epoch_after(2),
            Err(AppendRejection::EpochJump {
                index: 1,
                epoch: 4,
                current: 2
            })
        );
        assert_eq!(job(&[1]).epoch_after(0), Ok(1));
    }

    #[test]
    fn a_record_older_than_the_log_epoch_is_stale() {
        assert_eq!(
            job(&[2, 1]).epoch_after(2),
            Err(AppendRejection::StaleEpoch {
                index: 1,
                epoch: 1,
                current: 2
            })
        );
    }

    #[test]
    fn a_record_older_than_an_earlier_record_of_the_job_is_stale() {
        assert_eq!(
            job(&[1, 2, 1]).epoch_after(1),
            Err(AppendRejection::StaleEpoch {
                index: 2,
                epoch: 1,
                current: 2
            })
        );
    }
}
