//! A deterministic simulator of Chorus identities under faults (DESIGN §11).
//!
//! Why: several devices acting as one identity is a distributed system, and the
//! questions users and reviewers ask of it — is a message ever lost or shown twice,
//! does every device converge, what does a crash between two steps do, what does it
//! cost — are answered by running the real protocol through many schedules of faults,
//! not by argument. The simulator runs the **same core** the client runs (the fold,
//! the send plan, the record sealing, the receive decisions, the ratchet tree), with a
//! seeded RNG, a virtual clock, an in-memory relay that keeps the real relay's rules and
//! a network that loses, duplicates, delays and reorders. Only the I/O differs: the
//! client's sockets and SQLite are [`relay::Request`]s and the device's own fields here.
//!
//! A run is deterministic from its seed: the same seed gives the same run, event for
//! event ([`Outcome::trace`]). A failing run names its seed and the faults that struck;
//! [`shrink`] drops faults while it still fails, and `chorus-sim --seed N --faults
//! i,j` replays what is left.
//!
//! Strategies (`chorus_core::Strategy`): all five run. Under `per-device` each device
//! keeps its own pairwise sessions with the contact's devices ([`pairwise`]), the relay
//! keeps each identity's signed device list and refuses a post of copies that does not
//! match it; devices are not linked mid-run under it (yet).
//!
//! A run may revoke a device mid-conversation ([`FaultKind::Revoke`]): its state is
//! stolen, a sibling revokes it, the log rotates to a new epoch key, the sessions heal,
//! and a clone of the stolen state keeps sending, which no contact device may accept
//! once its heal is through.

pub mod check;
pub mod device;
pub mod faults;
pub mod pairwise;
pub mod relay;
mod world;

use std::collections::BTreeSet;

pub use chorus_core::Strategy;
pub use faults::{Fault, FaultKind, Faults};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Most devices an identity has in a run.
pub const MAX_DEVICES: usize = 8;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Config {
    /// The strategy both identities use.
    pub strategy: Strategy,
    /// Devices of the first and the second identity (1..=[`MAX_DEVICES`]).
    pub devices: (usize, usize),
    /// Messages typed in the window.
    pub messages: usize,
    /// The window in which messages are typed and faults strike (ms).
    pub window_ms: u64,
    /// The faults.
    pub faults: Faults,
    /// Only these scheduled faults (indices into the drawn schedule): a shrunk replay.
    pub keep: Option<BTreeSet<usize>>,
}

impl Config {
    /// The shape of a run drawn from its seed: 1–[`MAX_DEVICES`] devices a side (mostly
    /// a few), 10–40 messages over a minute, the hostile fault mix.
    pub fn for_seed(strategy: Strategy, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_c0de);
        let count = |rng: &mut StdRng| {
            if rng.random_bool(0.1) {
                rng.random_range(5..=MAX_DEVICES)
            } else {
                rng.random_range(1..=4)
            }
        };
        let devices = (count(&mut rng), count(&mut rng));
        let faults = Faults::hostile();
        Self {
            strategy,
            devices,
            messages: rng.random_range(10..=40),
            window_ms: 60_000,
            faults,
            keep: None,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A device count outside 1..=MAX_DEVICES.
    #[error("an identity has 1 to {MAX_DEVICES} devices, not {0}")]
    Devices(usize),
    /// Setting up the identities failed (a bug in the core or here).
    #[error("setting up the run failed: {0}")]
    Setup(String),
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Messages typed on a running device.
    pub typed: u64,
    /// Messages shown on a device of the contact.
    pub delivered: u64,
    /// Messages that reached the log but are missing on a surviving device.
    pub lost: u64,
    /// Messages not sent, or not shown on an identity's surviving devices, because its
    /// primary was destroyed (`primary`: nobody else sends or reads; not a failure).
    pub stranded: u64,
    /// Messages shown twice on one device.
    pub duplicated: u64,
    /// Messages typed on a device destroyed before they reached the log.
    pub dropped_with_device: u64,
    /// Messages not typed: every device of the identity was down.
    pub unavailable: u64,
    /// Messages typed while another device of the identity was down.
    pub typed_while_down: u64,
    /// Of those, delivered.
    pub delivered_while_down: u64,
    /// Races lost (a guarded append refused because a sibling sent first).
    pub conflicts: u64,
    /// Leader leases taken, both identities together (`leader`: the first, each
    /// renewal and each takeover).
    pub lease_terms: u64,
    /// Forward requests appended (`leader`, `primary`: a message handed to the device
    /// that encrypts; a request whose answer was lost is appended again).
    pub forwarded: u64,
    /// `Received` events appended by a primary for its siblings (`primary`).
    pub fanned_out: u64,
    /// Posts of copies the relay refused for a changed device set (`per-device`).
    pub mismatches: u64,
    /// Message keys used for two envelopes.
    pub key_reuse: u64,
    /// Ratchet forks: a peer key two or more of an identity's ratchet keys were built
    /// on (leaderless takes a fresh key per message, so every message sent before the
    /// contact answers counts).
    pub forks: u64,
    /// Requests to the relay.
    pub requests: u64,
    /// Bytes sent to the relay (payloads).
    pub bytes_up: u64,
    /// Bytes received from the relay (payloads).
    pub bytes_down: u64,
    /// Appends of a send attempted.
    pub send_attempts: u64,
    /// Requests given up on.
    pub timeouts: u64,
    /// Scheduled faults that struck.
    pub faults: u64,
    /// Devices destroyed.
    pub destroyed: u64,
    /// Devices linked mid-conversation.
    pub linked: u64,
    /// Messages typed on a device linked mid-conversation.
    pub typed_on_linked: u64,
    /// Devices stolen and revoked mid-conversation.
    pub revoked: u64,
    /// Messages the stolen devices' clones sent (one per copy set).
    pub clone_sent: u64,
    /// Clone envelopes a contact device showed before its heal went through (after
    /// it, each is a violation).
    pub clone_accepted: u64,
    /// Clone envelopes a contact device refused.
    pub clone_refused: u64,
    /// Messages of either identity the clone made unreadable before the heal: it spent
    /// their message key first, or the contact built them on the clone's fork before
    /// it knew of the theft (they are the clone's to read, as with any stolen session).
    pub stolen_by_clone: u64,
    /// Contact devices alive at the end of a run with a revocation whose heal never
    /// went through.
    pub clone_unhealed: u64,
    /// Typed → first shown on a contact device, per delivered message (ms).
    pub latency_ms: Vec<u64>,
    /// Sum of request round trips (ms).
    pub latency_rtt_ms: u64,
    /// From the end of the window to every device settled (ms).
    pub converge_ms: Option<u64>,
    /// Every device settled and each identity's devices hold one state (whatever
    /// else went wrong).
    pub converged: bool,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// A hash of every event processed and the final states: equal for equal runs.
    pub trace: [u8; 32],
    /// What was measured.
    pub stats: Stats,
    /// Invariants broken (empty: the run passed).
    pub violations: Vec<String>,
    /// The faults scheduled (after `keep`).
    pub schedule: Vec<Fault>,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs one seed.
pub fn run(config: &Config, seed: u64) -> Result<Outcome, SimError> {
    for n in [config.devices.0, config.devices.1] {
        if !(1..=MAX_DEVICES).contains(&n) {
            return Err(SimError::Devices(n));
        }
    }
    Ok(world::World::new(config, seed)?.run())
}

/// Shrinks a failing run: drops scheduled faults one at a time while the run still
/// fails. Returns the faults kept (indices into the full schedule) and the outcome.
pub fn shrink(config: &Config, seed: u64) -> Result<(BTreeSet<usize>, Outcome), SimError> {
    let full = run(config, seed)?;
    let mut keep: BTreeSet<usize> = match &config.keep {
        Some(k) => k.clone(),
        None => (0..full.schedule.len()).collect(),
    };
    let mut last = full;
    let mut changed = true;
    while changed {
        changed = false;
        for i in keep.clone() {
            let mut fewer = keep.clone();
            fewer.remove(&i);
            let c = Config {
                keep: Some(fewer.clone()),
                ..config.clone()
            };
            let o = run(&c, seed)?;
            if !o.passed() {
                keep = fewer;
                last = o;
                changed = true;
            }
        }
    }
    Ok((keep, last))
}
