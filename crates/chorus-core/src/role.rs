//! Who encrypts for the identity, and who reads its contacts' mailboxes: what each
//! multi-device strategy (`chorus_wire::Strategy`) asks of one device, decided here
//! once for the client and the simulator alike.
//!
//! - `sequenced` and `leaderless`: every device encrypts what is typed on it and reads
//!   every mailbox.
//! - `leader`: the holder of an unexpired lease in the log encrypts. A device with
//!   something to send while no lease holds takes one; the holder renews it when less
//!   than [`LEASE_RENEW_MS`] is left. A lease is appended guarded on the lease stream,
//!   so of two devices taking over at once exactly one wins, and its term is one past
//!   the one before it (the fold refuses anything else). When the leader goes away, its
//!   lease runs out and the next device with something to send takes over.
//! - `primary`: the device that set the strategy encrypts, and alone reads the
//!   contacts' mailboxes; it writes every message it decrypts to the log (`Received`),
//!   so its siblings show it. While it is away, nothing is sent or read.
//!
//! A device that does not encrypt hands what is typed on it to the one that does with a
//! `ForwardRequested` event, and every device keeps it pending until the `Sent` with its
//! envelope id folds. The device that encrypts sends with a guarded append on the
//! session stream, as `sequenced` does: two devices that both believe they hold the
//! lease (a skewed clock, a partition) still cannot make two sends of one session
//! state — the relay lets one through and the other folds it and looks again.

use chorus_wire::{EventKind, Strategy};

use crate::append::Pending;
use crate::fold::{Constellation, STRATEGY_REGISTER};
use crate::lease::{LEASE_MS, LEASE_REGISTER, LEASE_RENEW_MS, LEASE_STREAM, Lease};

/// What a device does with a message to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Role {
    /// Encrypt it here.
    Encrypt,
    /// Append this lease first (guarded: if another device took the lease, fold and
    /// decide again), then encrypt.
    TakeLease(Box<Pending>),
    /// Hand it to this device with a `ForwardRequested` event, and wait.
    Forward {
        /// The device that encrypts.
        to: [u8; 32],
    },
}

impl Constellation {
    /// The lease as folded, if one was ever taken.
    pub fn lease(&self) -> Option<Lease> {
        self.register(LEASE_REGISTER).and_then(Lease::decode)
    }

    /// Under `primary`, the device that encrypts and reads for the identity: the one
    /// that set the strategy.
    /// `None` when the primary left the roster: every device then sends for itself, as
    /// under `sequenced`, until one sets `primary` again and takes the role.
    pub fn primary(&self) -> Option<[u8; 32]> {
        if self.strategy() != Strategy::Primary {
            return None;
        }
        let author = self.register_stamp(STRATEGY_REGISTER)?.author;
        self.roster().is_authorized_id(&author).then_some(author)
    }

    /// The device that encrypts for the identity at `now_ms` (a device's clock): the
    /// holder of a lease that holds, under `leader`; the primary, under `primary`;
    /// `None` where every device encrypts for itself (or no lease holds).
    pub fn sender(&self, now_ms: u64) -> Option<[u8; 32]> {
        match self.strategy() {
            Strategy::Leader => self
                .lease()
                .filter(|l| l.holds_at(now_ms))
                .map(|l| l.holder),
            Strategy::Primary => self.primary(),
            _ => None,
        }
    }

    /// What device `me` does at `now_ms` (its clock) with a message to send.
    pub fn send_role(&self, me: &[u8; 32], now_ms: u64) -> Role {
        match self.strategy() {
            Strategy::Sequenced | Strategy::Leaderless | Strategy::PerDevice => Role::Encrypt,
            Strategy::Primary => match self.primary() {
                Some(p) if p != *me => Role::Forward { to: p },
                _ => Role::Encrypt,
            },
            Strategy::Leader => {
                let lease = self.lease();
                match lease {
                    Some(l) if l.holds_at(now_ms) && l.holder != *me => {
                        Role::Forward { to: l.holder }
                    }
                    Some(l)
                        if l.holder == *me
                            && l.holds_at(now_ms)
                            && now_ms.saturating_add(LEASE_RENEW_MS) < l.expires_ms =>
                    {
                        Role::Encrypt
                    }
                    _ => Role::TakeLease(Box::new(Pending::guarded(
                        EventKind::LeaderLease {
                            term: lease.map_or(1, |l| l.term.saturating_add(1)),
                            expires_ms: now_ms.saturating_add(LEASE_MS),
                        },
                        LEASE_STREAM.to_vec(),
                        None,
                    ))),
                }
            }
        }
    }

    /// Whether device `me` reads its contacts' mailboxes itself: every device does,
    /// but under `primary` only the primary (its siblings show what it writes to the
    /// log).
    pub fn reads_contacts(&self, me: &[u8; 32]) -> bool {
        self.primary().is_none_or(|p| p == *me)
    }

    /// Whether device `me` writes every message it decrypts to the log (`Received`)
    /// for its siblings: the primary, under `primary`.
    pub fn fans_out(&self, me: &[u8; 32]) -> bool {
        self.primary() == Some(*me)
    }
}
