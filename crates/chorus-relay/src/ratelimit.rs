//! Token-bucket rate limits, per key, in memory.
//!
//! Each write the relay accepts from the network is limited per something an
//! abuser cannot multiply for free: posts per mailbox, appends per device, prekey
//! fetches per address (each fetch burns a one-time key), unauthenticated
//! creations per client IP. Buckets are per process and refill from the injected
//! clock. The table is bounded ([`MAX_RATE_BUCKETS`]). Forgetting a bucket hands its
//! key the tokens it was missing, so when the table is full the limiter forgets
//! full buckets (which changes nothing) and then the eighth missing the fewest
//! tokens: touching many fresh keys evicts those fresh keys, never the drained
//! bucket an abuser wants forgotten.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::limits::{MAX_RATE_BUCKETS, Rate};

/// What a bucket limits (part of its key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Envelope posts per mailbox.
    MailboxPost,
    /// Appends per device.
    Append,
    /// Prekey fetches per address.
    PrekeyFetch,
    /// Log, channel and challenge creation per IP.
    Open,
    /// File part fetches per IP (no session: whoever knows a locator).
    FileFetch,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
    /// The rate it fills at (kinds differ), to judge it when making room.
    rate: Rate,
}

/// The buckets.
pub struct RateLimiter {
    buckets: Mutex<HashMap<(Kind, [u8; 32]), Bucket>>,
    max_buckets: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(MAX_RATE_BUCKETS)
    }
}

impl RateLimiter {
    /// An empty limiter holding at most `max_buckets` buckets.
    pub fn new(max_buckets: usize) -> Self {
        RateLimiter {
            buckets: Mutex::default(),
            max_buckets,
        }
    }

    /// Takes one token from the bucket for `(kind, key)`; false if empty.
    pub fn allow(&self, kind: Kind, key: [u8; 32], rate: Rate, now: i64) -> bool {
        if rate.per_sec.is_infinite() || rate.burst.is_infinite() {
            return true;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_buckets && !map.contains_key(&(kind, key)) {
            make_room(&mut map, self.max_buckets, now);
        }
        let b = map.entry((kind, key)).or_insert(Bucket {
            tokens: rate.burst,
            at_ms: now,
            rate,
        });
        let tokens = refill(*b, rate, now);
        let allowed = tokens >= 1.0;
        *b = Bucket {
            tokens: if allowed { tokens - 1.0 } else { tokens },
            at_ms: now,
            rate,
        };
        allowed
    }
}

/// Forgets full buckets, then, if the table is still full, the eighth of it that
/// is missing the fewest tokens (a partial sort, so an insert stays O(1) amortised
/// while the table is under pressure).
fn make_room(map: &mut HashMap<(Kind, [u8; 32]), Bucket>, max_buckets: usize, now: i64) {
    let missing = |b: &Bucket| b.rate.burst - refill(*b, b.rate, now);
    map.retain(|_, b| missing(b) > 0.0);
    if map.len() < max_buckets {
        return;
    }
    let evict = (max_buckets / 8).clamp(1, map.len());
    let mut by_missing: Vec<(f64, (Kind, [u8; 32]))> =
        map.iter().map(|(k, b)| (missing(b), *k)).collect();
    by_missing.select_nth_unstable_by(evict - 1, |a, b| a.0.total_cmp(&b.0));
    for (_, k) in &by_missing[..evict] {
        map.remove(k);
    }
}

fn refill(b: Bucket, rate: Rate, now: i64) -> f64 {
    let elapsed = (now - b.at_ms).max(0) as f64 / 1000.0;
    (b.tokens + elapsed * rate.per_sec).min(rate.burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_allowed_then_refused_until_refilled() {
        let r = RateLimiter::default();
        let rate = Rate {
            per_sec: 2.0,
            burst: 3.0,
        };
        let k = [7; 32];
        for _ in 0..3 {
            assert!(r.allow(Kind::MailboxPost, k, rate, 0));
        }
        assert!(!r.allow(Kind::MailboxPost, k, rate, 0));
        assert!(r.allow(Kind::Append, k, rate, 0), "kinds are separate");
        assert!(r.allow(Kind::MailboxPost, k, rate, 500));
        assert!(!r.allow(Kind::MailboxPost, k, rate, 500));
    }

    #[test]
    fn bucket_table_at_bound_forgets_idle_buckets_never_busy_ones() {
        let r = RateLimiter::default();
        let rate = Rate {
            per_sec: 1.0,
            burst: 2.0,
        };
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k
        };
        for i in 0..MAX_RATE_BUCKETS {
            assert!(r.allow(Kind::Open, key(i), rate, 0));
        }
        // Drain one bucket completely; it must stay limited.
        assert!(r.allow(Kind::Open, key(0), rate, 0));
        assert!(!r.allow(Kind::Open, key(0), rate, 0));
        // One more key at the bound: idle (full-again) buckets are dropped, the
        // drained one is kept.
        assert!(r.allow(Kind::Open, key(MAX_RATE_BUCKETS), rate, 1000));
        assert!(r.buckets.lock().map(|m| m.len() <= 2).unwrap_or(false));
        assert!(r.allow(Kind::Open, key(0), rate, 1000));
        assert!(!r.allow(Kind::Open, key(0), rate, 1000));
    }

    #[test]
    fn filling_the_table_with_fresh_keys_never_forgets_a_drained_bucket() {
        let r = RateLimiter::default();
        let rate = Rate {
            per_sec: 1.0,
            burst: 2.0,
        };
        let key = |i: usize| {
            let mut k = [0xff; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k
        };
        assert!(r.allow(Kind::Open, key(0), rate, 0));
        assert!(r.allow(Kind::Open, key(0), rate, 0));
        assert!(!r.allow(Kind::Open, key(0), rate, 0));
        // Twice the table's worth of fresh keys, all within the refill window.
        for i in 1..=2 * MAX_RATE_BUCKETS {
            assert!(r.allow(Kind::Open, key(i), rate, 0));
        }
        assert!(
            r.buckets
                .lock()
                .map(|m| m.len() <= MAX_RATE_BUCKETS)
                .unwrap_or(false)
        );
        assert!(
            !r.allow(Kind::Open, key(0), rate, 0),
            "drained bucket was forgotten"
        );
    }

    #[test]
    fn unlimited_rate_never_refuses() {
        let r = RateLimiter::default();
        for _ in 0..10_000 {
            assert!(r.allow(Kind::Open, [0; 32], Rate::UNLIMITED, 0));
        }
    }
}
