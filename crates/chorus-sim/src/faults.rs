//! The faults of a run: drawn from the seed as a schedule, so a failing run can be
//! replayed with fewer of them (shrunk) and printed.
//!
//! The network's steady faults (loss, duplication, delay and so reordering) apply
//! inside [`FaultKind::Lossy`] windows and at the base rates of [`Faults`]; everything
//! else is a scheduled event.

use std::fmt;

use rand::RngExt;
use rand::rngs::StdRng;

/// How hostile a run is.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Chance that a request or a reply is lost, outside lossy windows.
    pub loss: f64,
    /// Chance that a request arrives twice.
    pub duplication: f64,
    /// One-way network delay, drawn per message (ms): unequal delays reorder.
    pub delay_ms: (u64, u64),
    /// Scheduled faults per run (crashes, partitions, relay restarts, lossy windows).
    pub scheduled: usize,
    /// Whether a run may destroy one device right after it sends a new ratchet key.
    pub destroy: bool,
    /// Whether a run may link a new device mid-conversation.
    pub link: bool,
    /// Whether a run may revoke a device mid-conversation, its state stolen by a clone
    /// that keeps sending to the contact.
    pub revoke: bool,
    /// Largest clock skew of a device (ms, either way).
    pub skew_ms: u64,
    /// A dishonest relay that lets every guard through, so two devices' sends can
    /// take one version of a session stream. Not a fault the strategies must survive:
    /// the log's verification must *catch* it (every device refuses the second record).
    pub relay_ignores_guards: bool,
}

impl Faults {
    /// No faults: a perfect network, devices that never crash.
    pub fn none() -> Self {
        Self {
            loss: 0.0,
            duplication: 0.0,
            delay_ms: (5, 5),
            scheduled: 0,
            destroy: false,
            link: false,
            revoke: false,
            skew_ms: 0,
            relay_ignores_guards: false,
        }
    }

    /// The default hostile mix.
    pub fn hostile() -> Self {
        Self {
            loss: 0.02,
            duplication: 0.02,
            delay_ms: (1, 80),
            scheduled: 6,
            destroy: true,
            link: true,
            revoke: true,
            skew_ms: 5_000,
            relay_ignores_guards: false,
        }
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The device crashes (losing what is in flight) and restarts after `down_ms`.
    Crash {
        /// The device (world index).
        device: usize,
        /// How long it stays down.
        down_ms: u64,
    },
    /// The device cannot reach the relay for `ms`.
    Partition {
        /// The device.
        device: usize,
        /// How long.
        ms: u64,
    },
    /// The relay restarts: requests arriving in the next `ms` are dropped.
    RelayRestart {
        /// How long it is down.
        ms: u64,
    },
    /// For `ms`, each request and reply is lost with `percent`% chance.
    Lossy {
        /// How long.
        ms: u64,
        /// Loss, in percent.
        percent: u8,
    },
    /// The device is destroyed right after its next send reaches the log (the
    /// constellation note's lock-out: its new ratchet key is out, it never returns).
    DestroyAfterSend {
        /// The device.
        device: usize,
    },
    /// A new device is linked mid-conversation: `device` appends its authorization,
    /// and the new device starts from `device`'s state (as from the checkpoint and
    /// history a link brings).
    Link {
        /// The device that links it.
        device: usize,
    },
    /// The device's state is stolen and the device revoked: a sibling appends the
    /// root-signed revocation, and a **clone** of the stolen state keeps sending to the
    /// contact, which must refuse it once the heal is through (DESIGN §3).
    Revoke {
        /// The device.
        device: usize,
    },
}

/// A fault and when it strikes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When (ms of simulated time).
    pub at: u64,
    /// What.
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FaultKind::Crash { device, down_ms } => {
                write!(f, "t={}ms crash device {device}, down {down_ms}ms", self.at)
            }
            FaultKind::Partition { device, ms } => {
                write!(f, "t={}ms partition device {device} for {ms}ms", self.at)
            }
            FaultKind::RelayRestart { ms } => {
                write!(f, "t={}ms relay restart, down {ms}ms", self.at)
            }
            FaultKind::Lossy { ms, percent } => {
                write!(f, "t={}ms {percent}% loss for {ms}ms", self.at)
            }
            FaultKind::DestroyAfterSend { device } => write!(
                f,
                "t={}ms destroy device {device} right after its next send",
                self.at
            ),
            FaultKind::Link { device } => {
                write!(f, "t={}ms device {device} links a new device", self.at)
            }
            FaultKind::Revoke { device } => write!(
                f,
                "t={}ms device {device} is stolen, revoked, and its clone sends on",
                self.at
            ),
        }
    }
}

/// Draws a schedule of `faults.scheduled` faults (plus at most one destruction, one
/// link and one revocation) over `window_ms` for `devices` devices, of which
/// `destroyable` may be destroyed or revoked (never the last device of an identity),
/// and of those `revocable` revoked.
pub fn schedule(
    faults: &Faults,
    window_ms: u64,
    devices: usize,
    destroyable: &[usize],
    revocable: &[usize],
    rng: &mut StdRng,
) -> Vec<Fault> {
    let mut out = Vec::new();
    for _ in 0..faults.scheduled {
        let at = rng.random_range(0..window_ms.max(1));
        let device = rng.random_range(0..devices);
        let kind = match rng.random_range(0..4u8) {
            0 => FaultKind::Crash {
                device,
                down_ms: rng.random_range(10..20_000),
            },
            1 => FaultKind::Partition {
                device,
                ms: rng.random_range(100..40_000),
            },
            2 => FaultKind::RelayRestart {
                ms: rng.random_range(50..5_000),
            },
            _ => FaultKind::Lossy {
                ms: rng.random_range(500..20_000),
                percent: rng.random_range(5..60),
            },
        };
        out.push(Fault { at, kind });
    }
    let mut destroyed = None;
    if faults.destroy && !destroyable.is_empty() && rng.random_bool(0.5) {
        let device = destroyable[rng.random_range(0..destroyable.len())];
        destroyed = Some(device);
        out.push(Fault {
            at: rng.random_range(0..window_ms.max(1)),
            kind: FaultKind::DestroyAfterSend { device },
        });
    }
    if faults.link && rng.random_bool(0.5) {
        out.push(Fault {
            at: rng.random_range(0..window_ms.max(1)),
            kind: FaultKind::Link {
                device: rng.random_range(0..devices),
            },
        });
    }
    if faults.revoke && !revocable.is_empty() && rng.random_bool(0.5) {
        let device = revocable[rng.random_range(0..revocable.len())];
        // Never the destroyed device's last sibling too (the world skips a revocation
        // that would leave an identity no device).
        if destroyed != Some(device) {
            out.push(Fault {
                at: rng.random_range(0..window_ms.max(1)),
                kind: FaultKind::Revoke { device },
            });
        }
    }
    out.sort_by_key(|f| f.at);
    out
}
