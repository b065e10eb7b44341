//! What every part of the client shares about a device: its options, its clock and
//! where its randomness comes from, and the crash-test failpoints.
//!
//! Kept apart from what a device *does* (`device/` receives and sends, `log.rs` folds
//! and appends, `link.rs` links), so those modules all build on this one and none of
//! them on another's internals.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chorus_crypto::{Entropy, SystemEntropy};

use crate::relay::Backoff;
use crate::{Store, Unlock};

/// Default [`Options::sibling_delivery`].
pub const SIBLING_DELIVERY: Duration = Duration::from_secs(30);
/// Default [`Options::heartbeat`]: well inside the relay's presence window (90 s), so a
/// device running `watch` always shows as online to its siblings.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Where "now" comes from. The client reads time only through this, so tests can move
/// it (prekey rotation, grace periods).
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// How a device talks to the world.
#[derive(Clone)]
pub struct Options {
    /// Retry schedule for relay calls.
    pub backoff: Backoff,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where every key, nonce and id this device draws comes from: the operating
    /// system, or a seeded stream to replay a run (tests, the simulator).
    pub entropy: Arc<dyn Entropy>,
    /// Argon2id memory cost (KiB) for a passphrase-protected store.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// How long a sibling's sent envelope may wait undelivered before this device
    /// posts it itself (the sibling may have died right after its `Sent` append).
    pub sibling_delivery: Duration,
    /// Connect to relays others name (contacts' hellos, invitations, addresses) even
    /// on loopback, private or link-local hosts and over plain http. Off: see
    /// [`UrlPolicy::for_home`]. For test setups.
    pub allow_private_relays: bool,
    /// How often `watch` tells the relay this device is online (`chorus devices` on a
    /// sibling shows it, with when it was last heard from).
    pub heartbeat: Duration,
    /// The size a linking device cuts the history archive at (tests use small ones to
    /// get several chunks).
    pub history_chunk_bytes: usize,
}

impl Options {
    /// Opens (or creates) the store in `home` with these Argon2id costs.
    pub(crate) async fn open_store(
        &self,
        home: &Path,
        unlock: Unlock,
    ) -> Result<Store, crate::StoreError> {
        Store::open_with_entropy(
            home,
            unlock,
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.entropy.clone(),
        )
        .await
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backoff: Backoff::COMMAND,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(SystemEntropy),
            argon2_memory_kib: chorus_crypto::ARGON2_MEMORY_KIB,
            argon2_iterations: chorus_crypto::ARGON2_ITERATIONS,
            sibling_delivery: SIBLING_DELIVERY,
            allow_private_relays: false,
            heartbeat: HEARTBEAT,
            history_chunk_bytes: chorus_wire::HISTORY_CHUNK_TARGET,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// Test hook: with `CHORUS_FAILPOINT=<name>` the process stops at the named point
/// (sleeping until killed), so tests can `kill -9` it exactly there. Never set in use.
pub(crate) fn failpoint(name: &str) {
    if std::env::var("CHORUS_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}
