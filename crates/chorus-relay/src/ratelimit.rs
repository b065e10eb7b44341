//! Token-bucket rate limits, per key, in memory.
//!
//! Each write the relay accepts from the network is limited per something an
//! abuser cannot multiply for free: posts per mailbox, appends per device, prekey
//! fetches per address (each fetch burns a one-time key), unauthenticated
//! creations per client IP. Buckets are per process and refill from the injected
//! clock. The table is bounded ([`MAX_RATE_BUCKETS`]); when full, idle buckets are
//! forgotten, which only ever errs towards allowing.

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
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// The buckets.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(Kind, [u8; 32]), Bucket>>,
}

impl RateLimiter {
    /// Takes one token from the bucket for `(kind, key)`; false if empty.
    pub fn allow(&self, kind: Kind, key: [u8; 32], rate: Rate, now: i64) -> bool {
        if rate.per_sec.is_infinite() || rate.burst.is_infinite() {
            return true;
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_RATE_BUCKETS && !map.contains_key(&(kind, key)) {
            map.retain(|_, b| refill(*b, rate, now) < rate.burst);
            if map.len() >= MAX_RATE_BUCKETS {
                map.clear();
            }
        }
        let b = map.entry((kind, key)).or_insert(Bucket {
            tokens: rate.burst,
            at_ms: now,
        });
        let tokens = refill(*b, rate, now);
        if tokens >= 1.0 {
            *b = Bucket {
                tokens: tokens - 1.0,
                at_ms: now,
            };
            true
        } else {
            *b = Bucket { tokens, at_ms: now };
            false
        }
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
    fn unlimited_rate_never_refuses() {
        let r = RateLimiter::default();
        for _ in 0..10_000 {
            assert!(r.allow(Kind::Open, [0; 32], Rate::UNLIMITED, 0));
        }
    }
}
