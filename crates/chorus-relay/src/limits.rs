//! Every bound the relay enforces, named in one place.
//!
//! The relay is reachable by anyone, so every input size, every queue and every
//! write rate has a bound here, each with a comment saying why it has the value it
//! has, and each hit exactly by a test (`tests/conformance.rs`, `limits_*`).
//! Wire-level bounds (what a request may contain) are constants; operational bounds
//! that an operator may want to tune (TTLs, quotas, rates) are defaults for
//! [`Limits`], which `chorus-relay serve` exposes as flags.

use std::time::Duration;

pub use chorus_relay_api::limits::*;

/// Most devices ever registered under one log, revoked ones included (a roster
/// that only grows must still be bounded).
pub const MAX_DEVICES_PER_LOG: usize = 64;

/// Default most mailboxes registered under one log (one per contact relationship
/// plus rotations).
pub const DEFAULT_MAX_MAILBOXES_PER_LOG: usize = 4096;

/// Default most unexpired envelopes held in one mailbox: a mailbox that nobody reads
/// must not grow without bound.
pub const DEFAULT_MAILBOX_DEPTH: u32 = 10_000;

/// Default time an envelope is kept: long enough for a device that is away for a
/// few weeks, short enough that the relay does not become an archive.
pub const DEFAULT_MAILBOX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Default total unexpired envelope bytes per log. Mailbox depth alone allows
/// 4,096 mailboxes × 10,000 envelopes × 64 KiB ≈ 2.6 TB per log; a real inbox of
/// padded messages (~1 KiB each) holds a million messages in 1 GiB. First-contact
/// mailboxes drop their oldest instead of refusing, so strangers alone cannot use
/// the quota up for long (their envelopes count until they are dropped or expire).
pub const DEFAULT_ENVELOPE_QUOTA_BYTES: u64 = 1024 * 1024 * 1024;

/// Default most stored records per log: ten years of a busy identity (a few
/// records per message, hundreds of messages a day); compaction trims below it.
/// With [`MAX_RECORD_BYTES`] it also bounds a log's bytes.
pub const DEFAULT_MAX_RECORDS_PER_LOG: u64 = 2_000_000;

/// Default largest blob (checkpoints, history archives).
pub const DEFAULT_MAX_BLOB_BYTES: usize = 16 * 1024 * 1024;

/// Default total blob bytes per log.
pub const DEFAULT_BLOB_QUOTA_BYTES: u64 = 256 * 1024 * 1024;

/// Default total bytes of unexpired file parts per log: ten of the largest files
/// (`chorus_wire::limits::MAX_FILE_LEN`), or thousands of photos.
pub const DEFAULT_FILE_QUOTA_BYTES: u64 = 1024 * 1024 * 1024;

/// Most parts a file has: the largest file (`chorus_wire::limits::MAX_FILE_LEN`) in
/// parts of `chorus_wire::limits::FILE_PART_LEN`. A part index beyond is refused.
pub const MAX_FILE_PARTS: u32 = 400;

/// Each file part counts at least this many bytes against the log's file quota, so
/// many tiny parts cannot grow the database without bound while using none of it.
pub const MIN_FILE_PART_CHARGE: usize = 1024;

/// Default longest a file part is kept: a file is fetched by every device of its
/// reader, some of which may be away for weeks (as long as envelopes wait).
pub const DEFAULT_MAX_FILE_TTL: Duration = DEFAULT_MAILBOX_TTL;

/// Most one-time prekeys (of each kind) stored per address.
pub const MAX_PREKEYS_STORED: u32 = 1000;

/// How long a rendezvous channel for linking lives (DESIGN §7).
pub const RENDEZVOUS_TTL: Duration = Duration::from_secs(10 * 60);

/// Most messages in one rendezvous channel (linking needs three or four).
pub const MAX_RENDEZVOUS_MESSAGES: u32 = 8;

/// How long an authentication challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// Most outstanding challenges held (all devices).
pub const MAX_PENDING_CHALLENGES: usize = 100_000;

/// Most outstanding challenges per device key; asking for one more forgets that
/// key's oldest. An honest device has one in flight (a few if it retries after a
/// lost answer); without a per-key cap one device could fill
/// [`MAX_PENDING_CHALLENGES`] and lock every other device out of logging in.
pub const MAX_PENDING_CHALLENGES_PER_DEVICE: usize = 16;

/// Default session token lifetime: short, so a stolen token is worth little; a
/// device re-authenticates with its key for free.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(15 * 60);

/// Most live sessions held (all devices).
pub const MAX_SESSIONS: usize = 100_000;

/// Most open WebSockets per device: one per running client process (`watch`, a
/// chat screen, a reconnect that overlaps the old socket). Without a cap one
/// device's token could hold any number of sockets, each re-reading the store on
/// every event of its log.
pub const MAX_SOCKETS_PER_DEVICE: usize = 4;

/// Most live sessions per device; issuing one more drops that device's oldest
/// token. A device needs one token at a time (two while renewing, a few more if it
/// runs several processes); without a per-device cap one device could fill
/// [`MAX_SESSIONS`] and lock every other device out.
pub const MAX_SESSIONS_PER_DEVICE: usize = 16;

/// A device is shown as present for this long after its last heartbeat.
pub const PRESENCE_TTL: Duration = Duration::from_secs(90);

/// Most logs with presence entries held in memory.
pub const MAX_PRESENCE_LOGS: usize = 100_000;

/// Most rate-limit buckets held in memory (~100 bytes each, so ~20 MB). Beyond
/// this, full buckets are forgotten (which changes nothing) and then the eighth
/// missing the fewest tokens: an abuser touching many fresh keys evicts those, not
/// the bucket it drained. Never cleared wholesale, which would reset every limit.
pub const MAX_RATE_BUCKETS: usize = 200_000;

/// Most append requests committed in one group commit.
pub const MAX_GROUP_COMMIT: usize = 256;

/// Depth of the group-commit queue; beyond it appenders wait (back-pressure).
pub const APPEND_QUEUE_DEPTH: usize = 4096;

/// Capacity of the in-process event bus feeding WebSockets; a socket that falls
/// further behind re-reads from the store instead (nothing is lost).
pub const EVENT_BUS_CAPACITY: usize = 4096;

/// Longest a request may take to be answered (a slow client trickling a body
/// must not hold a connection and a body buffer forever). WebSockets are exempt
/// once upgraded.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How often expired envelopes and channels are deleted.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A token bucket: `burst` requests at once, refilled at `per_sec`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Bucket size.
    pub burst: f64,
}

impl Rate {
    /// A rate that never limits (benchmarks).
    pub const UNLIMITED: Rate = Rate {
        per_sec: f64::INFINITY,
        burst: f64::INFINITY,
    };
}

/// Default posts per mailbox from one source address: a conversation burst is a
/// few messages a second. Keyed by mailbox *and* source, so one sender flooding a
/// mailbox (the intro mailbox is public) neither fills it quickly nor uses up
/// everyone else's budget for it.
pub const DEFAULT_MAILBOX_POST_RATE: Rate = Rate {
    per_sec: 10.0,
    burst: 100.0,
};

/// Default appends per device.
pub const DEFAULT_APPEND_RATE: Rate = Rate {
    per_sec: 50.0,
    burst: 500.0,
};

/// Default prekey bundle fetches per address: fetching drains one-time prekeys, so
/// this bounds how fast a stranger can exhaust them.
pub const DEFAULT_PREKEY_FETCH_RATE: Rate = Rate {
    per_sec: 1.0,
    burst: 20.0,
};

/// Default file part fetches per client IP address (they need no session): the
/// largest file (400 parts) at once, then ~25 MiB/s of parts, so one client that
/// knows a locator cannot take the relay's bandwidth.
pub const DEFAULT_FILE_FETCH_RATE: Rate = Rate {
    per_sec: 100.0,
    burst: 1000.0,
};

/// Default unauthenticated creations (logs, rendezvous channels, challenges) per
/// client IP address.
pub const DEFAULT_OPEN_RATE: Rate = Rate {
    per_sec: 20.0,
    burst: 200.0,
};

/// Operational limits, defaulting to the constants above.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long envelopes are kept.
    pub mailbox_ttl: Duration,
    /// Most unexpired envelopes per mailbox.
    pub mailbox_depth: u32,
    /// Most mailboxes per log.
    pub max_mailboxes_per_log: usize,
    /// Session token lifetime.
    pub session_ttl: Duration,
    /// Largest blob.
    pub max_blob_bytes: usize,
    /// Total blob bytes per log.
    pub blob_quota_bytes: u64,
    /// Total unexpired envelope payload bytes per log, over all its mailboxes.
    pub envelope_quota_bytes: u64,
    /// Total unexpired file part bytes per log.
    pub file_quota_bytes: u64,
    /// Longest a file part is kept.
    pub max_file_ttl: Duration,
    /// Most log records stored per log (trimmed ones no longer count).
    pub max_records_per_log: u64,
    /// Posts per mailbox from one source address.
    pub mailbox_post_rate: Rate,
    /// Appends per device.
    pub append_rate: Rate,
    /// Prekey fetches per address.
    pub prekey_fetch_rate: Rate,
    /// Unauthenticated creations per client IP.
    pub open_rate: Rate,
    /// File part fetches per client IP.
    pub file_fetch_rate: Rate,
    /// Most live sessions held (all devices).
    pub max_sessions: usize,
    /// Most outstanding challenges held (all devices).
    pub max_pending_challenges: usize,
    /// Most rate-limit buckets held in memory.
    pub max_rate_buckets: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client for per-IP limits
    /// (see [`crate::proxy`]); empty means the TCP peer is the client.
    pub trusted_proxies: Vec<crate::proxy::Cidr>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            mailbox_ttl: DEFAULT_MAILBOX_TTL,
            mailbox_depth: DEFAULT_MAILBOX_DEPTH,
            max_mailboxes_per_log: DEFAULT_MAX_MAILBOXES_PER_LOG,
            session_ttl: DEFAULT_SESSION_TTL,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            blob_quota_bytes: DEFAULT_BLOB_QUOTA_BYTES,
            envelope_quota_bytes: DEFAULT_ENVELOPE_QUOTA_BYTES,
            file_quota_bytes: DEFAULT_FILE_QUOTA_BYTES,
            max_file_ttl: DEFAULT_MAX_FILE_TTL,
            max_records_per_log: DEFAULT_MAX_RECORDS_PER_LOG,
            mailbox_post_rate: DEFAULT_MAILBOX_POST_RATE,
            append_rate: DEFAULT_APPEND_RATE,
            prekey_fetch_rate: DEFAULT_PREKEY_FETCH_RATE,
            open_rate: DEFAULT_OPEN_RATE,
            file_fetch_rate: DEFAULT_FILE_FETCH_RATE,
            max_sessions: MAX_SESSIONS,
            max_pending_challenges: MAX_PENDING_CHALLENGES,
            max_rate_buckets: MAX_RATE_BUCKETS,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Limits {
    /// Limits with every rate unlimited (benchmarks, load tests).
    pub fn unlimited_rates(mut self) -> Self {
        self.mailbox_post_rate = Rate::UNLIMITED;
        self.append_rate = Rate::UNLIMITED;
        self.prekey_fetch_rate = Rate::UNLIMITED;
        self.open_rate = Rate::UNLIMITED;
        self.file_fetch_rate = Rate::UNLIMITED;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_part_bound_is_the_largest_files_part_count() {
        let largest = chorus_wire::limits::MAX_FILE_LEN;
        assert_eq!(MAX_FILE_PARTS, chorus_wire::parts_of(largest));
    }
}
