//! A second handshake with a contact we already have a session with: which session
//! the conversation goes on, and how long the other one is still read.
//!
//! Two cases produce one, and one rule settles both:
//!
//! - **The contact started over** (reinstalled, restored an old backup, or accepted a
//!   new invitation of ours). Their new session replaces ours at once: they no longer
//!   hold the old one's keys, so anything we send on it is lost.
//! - **Both sides started at once** (each accepted the other's invitation). Each side
//!   holds a session it initiated that the other never answered, and receives the
//!   other's first message. Both must pick the same one without talking: the session
//!   started by the identity with the lower root key wins, on both sides.
//!
//! The session that stops being current becomes *read-only*: messages already on
//! their way on it are still read for [`STALE_SESSION_DRAIN`], then it is deleted and
//! refuses everything. That bound is what keeps a *clone* out: Signal kept up to 40
//! old sessions open indefinitely, so an attacker holding a copy of a device's old
//! state kept writing on an old session after the victim healed (Cremers, Jacomme,
//! Naska, "Formal Analysis of Session-Handling in Secure Messaging", USENIX Security
//! 2023). Here an old session is never written on again and never read past its
//! drain window.
//!
//! The decision is taken once, by the device that reads the handshake, and recorded
//! in the identity's log with it, so every sibling folds the same outcome whatever
//! it has received itself.

use std::time::Duration;

/// How long a session that stopped being current still decrypts messages that were
/// already on their way (by the receiving device's clock, from when it stopped).
pub const STALE_SESSION_DRAIN: Duration = Duration::from_secs(3 * 24 * 3600);

/// Most read-only sessions kept per contact; the oldest goes first.
pub const MAX_STALE_SESSIONS: usize = 4;

/// What the device knows of the session it is on when a new handshake arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentSession {
    /// We initiated it and no answer from the contact has been decrypted on it.
    pub awaiting_reply: bool,
    /// Its first message was refused for good (say, an invitation already used):
    /// the contact will never answer it.
    pub failed: bool,
}

/// Where a new handshake from a known contact leaves the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The new session becomes current; the old one is read-only until drained.
    Replace,
    /// The current session stays; the new one is read-only until drained (its
    /// messages are read, nothing is sent on it).
    KeepCurrent,
}

/// Settles a new handshake from the contact whose root key is `theirs`; `ours` is
/// our root key.
pub fn settle(current: CurrentSession, ours: &[u8; 32], theirs: &[u8; 32]) -> Settled {
    if current.failed || !current.awaiting_reply {
        // They started over: they no longer hold the current session.
        return Settled::Replace;
    }
    // Both started at once: the lower root key's session wins, on both sides.
    if theirs < ours {
        Settled::Replace
    } else {
        Settled::KeepCurrent
    }
}

/// Whether a session read-only since `since_ms` has drained by `now_ms`.
pub fn drained(since_ms: i64, now_ms: i64) -> bool {
    let drain = i64::try_from(STALE_SESSION_DRAIN.as_millis()).unwrap_or(i64::MAX);
    now_ms >= since_ms.saturating_add(drain)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITING: CurrentSession = CurrentSession {
        awaiting_reply: true,
        failed: false,
    };

    #[test]
    fn both_sides_of_a_simultaneous_start_pick_the_same_session() {
        let (low, high) = ([1u8; 32], [2u8; 32]);
        // Each side sees the other's handshake while waiting on its own.
        let at_low = settle(WAITING, &low, &high);
        let at_high = settle(WAITING, &high, &low);
        // The low side keeps its own; the high side takes the low side's.
        assert_eq!((at_low, at_high), (Settled::KeepCurrent, Settled::Replace));
    }

    #[test]
    fn a_contact_who_started_over_always_replaces_an_answered_session() {
        let answered = CurrentSession {
            awaiting_reply: false,
            failed: false,
        };
        assert_eq!(settle(answered, &[1; 32], &[2; 32]), Settled::Replace);
        assert_eq!(settle(answered, &[2; 32], &[1; 32]), Settled::Replace);
    }

    #[test]
    fn a_failed_session_never_wins() {
        let failed = CurrentSession {
            awaiting_reply: true,
            failed: true,
        };
        assert_eq!(settle(failed, &[1; 32], &[2; 32]), Settled::Replace);
    }

    #[test]
    fn a_stale_session_drains_exactly_at_the_window() {
        let window = i64::try_from(STALE_SESSION_DRAIN.as_millis()).unwrap_or(0);
        assert!(!drained(1_000, 1_000 + window - 1));
        assert!(drained(1_000, 1_000 + window));
    }
}
