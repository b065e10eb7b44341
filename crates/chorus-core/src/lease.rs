//! The `leader` strategy's lease as the log holds it: its bounds, its stream and its
//! register (`role.rs` decides with it; the fold keeps it).

/// How long a lease lasts from when it is taken (the holder's clock).
pub const LEASE_MS: u64 = 30_000;

/// A holder renews its lease when less than this is left, so that a send it plans does
/// not outlive it.
pub const LEASE_RENEW_MS: u64 = 10_000;

/// How far ahead of a device's clock a lease may end and still hold for it, beyond its
/// length: a holder whose clock runs further ahead (a lease that seems to start in the
/// future) is not waited for — else one device with its clock set a year ahead would
/// keep every other from sending for a year.
pub const LEASE_MAX_SKEW_MS: u64 = 60_000;

/// The stream leases are guarded on (before keying).
pub const LEASE_STREAM: &[u8] = b"leader-lease";

/// The register the lease in force is kept in.
pub const LEASE_REGISTER: &str = "leader-lease";

/// The lease as folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The device holding it.
    pub holder: [u8; 32],
    /// Its term (one past the lease before it).
    pub term: u64,
    /// Until when (the holder's clock).
    pub expires_ms: u64,
}

impl Lease {
    /// The register value: holder, term, expiry.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = self.holder.to_vec();
        v.extend_from_slice(&self.term.to_be_bytes());
        v.extend_from_slice(&self.expires_ms.to_be_bytes());
        v
    }

    /// Whether the lease holds at `now_ms` (a device's clock): not yet expired, and not
    /// ending further ahead than a lease lasts plus [`LEASE_MAX_SKEW_MS`].
    pub fn holds_at(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms
            && self.expires_ms <= now_ms.saturating_add(LEASE_MS + LEASE_MAX_SKEW_MS)
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        let (holder, rest) = v.split_first_chunk::<32>()?;
        let (term, rest) = rest.split_first_chunk::<8>()?;
        let expires: [u8; 8] = rest.try_into().ok()?;
        Some(Self {
            holder: *holder,
            term: u64::from_be_bytes(*term),
            expires_ms: u64::from_be_bytes(expires),
        })
    }
}
