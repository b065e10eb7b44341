//! Lamport clocks and last-writer-wins registers for the constellation's shared fields
//! (profile, contact names, relay list; DESIGN §4).
//!
//! Every event carries a [`Stamp`]. Concurrent writes to one field are resolved by the
//! total order `(lamport, timestamp, author key, event id)`, so every device that has
//! seen the same events holds the same value, whatever order they arrived in: the
//! register is a join semilattice (commutative, associative, idempotent), which the
//! property tests check.

/// When and by whom an event was written, in the order that breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// The author's Lamport clock at the event.
    pub lamport: u64,
    /// The author's wall clock (milliseconds), for display and as the second tie-break.
    pub timestamp_ms: u64,
    /// The author device's key.
    pub author: [u8; 32],
    /// The event's random id.
    pub event_id: [u8; 16],
}

impl Stamp {
    /// The stamp of a log event.
    pub fn of(event: &chorus_wire::LogEvent) -> Self {
        Self {
            lamport: event.lamport,
            timestamp_ms: event.timestamp_ms,
            author: event.author,
            event_id: event.event_id,
        }
    }
}

/// A device's Lamport clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LamportClock(u64);

impl LamportClock {
    /// The value for a new local event (one past everything observed).
    pub fn tick(&mut self) -> u64 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    /// Takes an observed event's clock into account.
    pub fn observe(&mut self, lamport: u64) {
        self.0 = self.0.max(lamport);
    }

    /// The current value.
    pub fn now(&self) -> u64 {
        self.0
    }
}

/// A last-writer-wins register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lww<T> {
    value: T,
    stamp: Stamp,
}

impl<T> Lww<T> {
    /// A register holding `value`, written at `stamp`.
    pub fn new(value: T, stamp: Stamp) -> Self {
        Self { value, stamp }
    }

    /// Applies a write; returns whether it won (it is newer than the current one).
    pub fn set(&mut self, value: T, stamp: Stamp) -> bool {
        if stamp > self.stamp {
            self.value = value;
            self.stamp = stamp;
            true
        } else {
            false
        }
    }

    /// Merges another replica of the register.
    pub fn merge(&mut self, other: Self) {
        self.set(other.value, other.stamp);
    }

    /// The current value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The winning write's stamp.
    pub fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stamp() -> impl Strategy<Value = Stamp> {
        // Small ranges so that ties on the first fields are common.
        (0u64..4, 0u64..4, 0u8..3, any::<[u8; 16]>()).prop_map(|(l, t, a, id)| Stamp {
            lamport: l,
            timestamp_ms: t,
            author: [a; 32],
            event_id: id,
        })
    }

    proptest! {
        #[test]
        fn every_order_of_the_same_writes_gives_the_same_value(
            writes in proptest::collection::vec((stamp(), any::<u16>()), 1..12),
            seed in any::<u64>(),
        ) {
            let mut forward = Lww::new(0u16, Stamp::default());
            for (s, v) in &writes {
                forward.set(*v, *s);
            }
            let mut shuffled = writes.clone();
            // A deterministic permutation from the seed.
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            let mut other = Lww::new(0u16, Stamp::default());
            for (s, v) in shuffled.iter().rev() {
                other.set(*v, *s);
            }
            // Duplicates are idempotent; merging replicas is order-free.
            for (s, v) in &writes {
                other.set(*v, *s);
            }
            prop_assert_eq!(forward.stamp(), other.stamp());
            let mut merged = Lww::new(0u16, Stamp::default());
            merged.merge(other.clone());
            merged.merge(forward.clone());
            prop_assert_eq!(&merged, &forward);
        }
    }

    #[test]
    fn ties_break_by_lamport_then_time_then_author_then_event_id() {
        let base = Stamp {
            lamport: 5,
            timestamp_ms: 10,
            author: [1; 32],
            event_id: [1; 16],
        };
        let mut r = Lww::new("base", base);
        assert!(!r.set(
            "older clock",
            Stamp {
                lamport: 4,
                timestamp_ms: 99,
                ..base
            }
        ));
        assert!(r.set(
            "later time",
            Stamp {
                timestamp_ms: 11,
                ..base
            }
        ));
        assert!(r.set(
            "higher author",
            Stamp {
                timestamp_ms: 11,
                author: [2; 32],
                ..base
            }
        ));
        assert!(r.set(
            "higher id",
            Stamp {
                timestamp_ms: 11,
                author: [2; 32],
                event_id: [2; 16],
                ..base
            }
        ));
        assert!(!r.set("replay", *r.stamp()));
        assert_eq!(*r.get(), "higher id");
    }

    #[test]
    fn the_lamport_clock_moves_past_everything_observed() {
        let mut c = LamportClock::default();
        assert_eq!(c.tick(), 1);
        c.observe(10);
        c.observe(3);
        assert_eq!(c.tick(), 11);
        c.observe(u64::MAX);
        assert_eq!(c.tick(), u64::MAX);
    }
}
