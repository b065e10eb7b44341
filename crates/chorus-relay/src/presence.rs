//! Presence: which sibling devices sent a heartbeat recently.
//!
//! Held in memory only and never stored (DESIGN §9): it is advisory (a device may
//! prefer a present sibling for `ForwardRequested`), so losing it on restart is
//! harmless, and not persisting it keeps activity patterns off the disk. Several
//! relay processes over one PostgreSQL database share heartbeats as events
//! ([`crate::store::Event::Heartbeat`], over `LISTEN/NOTIFY`), so each process
//! holds the same table without it ever being written down.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::api::{Id32, PresenceOut};
use crate::clock::duration_ms;
use crate::limits::{MAX_DEVICES_PER_LOG, MAX_PRESENCE_LOGS, PRESENCE_TTL};

/// Heartbeats by log, then device.
#[derive(Default)]
pub struct Presence {
    seen: Mutex<HashMap<Id32, HashMap<Id32, i64>>>,
}

impl Presence {
    /// Records a heartbeat; false if the table is full of live entries.
    pub fn beat(&self, log_id: Id32, device_id: Id32, now: i64) -> bool {
        let ttl = duration_ms(PRESENCE_TTL);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_PRESENCE_LOGS && !seen.contains_key(&log_id) {
            seen.retain(|_, devs| {
                devs.retain(|_, at| *at + ttl > now);
                !devs.is_empty()
            });
            if seen.len() >= MAX_PRESENCE_LOGS {
                return false;
            }
        }
        let devs = seen.entry(log_id).or_default();
        if devs.len() >= MAX_DEVICES_PER_LOG && !devs.contains_key(&device_id) {
            devs.retain(|_, at| *at + ttl > now);
        }
        devs.insert(device_id, now);
        true
    }

    /// Devices of a log heard from within [`PRESENCE_TTL`], most recent first.
    pub fn list(&self, log_id: Id32, now: i64) -> Vec<PresenceOut> {
        let ttl = duration_ms(PRESENCE_TTL);
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<PresenceOut> = seen
            .get(&log_id)
            .map(|devs| {
                devs.iter()
                    .filter(|(_, at)| **at + ttl > now)
                    .map(|(d, at)| PresenceOut {
                        device_id: *d,
                        last_seen_ms: *at,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|p| std::cmp::Reverse(p.last_seen_ms));
        out
    }

    /// Forgets a device (revoked).
    pub fn forget(&self, log_id: Id32, device_id: Id32) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(devs) = seen.get_mut(&log_id) {
            devs.remove(&device_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_table_at_bound_refuses_new_logs_until_entries_fade() {
        let p = Presence::default();
        let dev = Id32([0; 32]);
        for i in 0..MAX_PRESENCE_LOGS {
            let mut log = [0u8; 32];
            log[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(p.beat(Id32(log), dev, 0));
        }
        assert!(!p.beat(Id32([0xff; 32]), dev, 0));
        assert!(p.beat(Id32([0xff; 32]), dev, duration_ms(PRESENCE_TTL)));
    }

    #[test]
    fn heartbeats_fade_after_the_presence_window() {
        let p = Presence::default();
        let (log, dev) = (Id32([1; 32]), Id32([2; 32]));
        assert!(p.beat(log, dev, 1_000));
        assert_eq!(p.list(log, 1_000).len(), 1);
        assert!(p.list(log, 1_000 + duration_ms(PRESENCE_TTL)).is_empty());
    }
}
