//! The device value and what every part of the client shares about it: its clock and
//! options, the keys it seals log records with, and where randomness comes from.
//!
//! Kept apart from what a device *does* (`device.rs` receives and sends, `log.rs` folds
//! and appends, `link.rs` links), so those modules all build on this one and none of
//! them on another's internals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chorus_core::{RecordContext, seal_event};
use chorus_crypto::{Entropy, EntropyRng, EpochKey, SystemEntropy};
use chorus_relay_api::{Guard, HexBytes, Id32, RecordIn};
use chorus_wire::LogEvent;

use crate::identity::Me;
use crate::relay::{Backoff, RelayClient};
use crate::{ClientError, Store, Unlock};

/// Default [`Options::sibling_delivery`].
pub const SIBLING_DELIVERY: Duration = Duration::from_secs(30);

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

/// A device: an unlocked store, its identity, its view of the identity's log and its
/// relay.
pub struct Device {
    pub(crate) store: Store,
    pub(crate) me: Me,
    pub(crate) relay: RelayClient,
    pub(crate) options: Options,
    pub(crate) home: PathBuf,
    pub(crate) log: LogKeys,
    /// The folded log state (`chorus_core::Constellation`), restored from the store
    /// on first use; the lock also serializes this process's folds and appends.
    pub(crate) fold: tokio::sync::Mutex<Option<chorus_core::Constellation>>,
    /// Sequenced sends that lost the race to a sibling and were encrypted again.
    pub(crate) lost_races: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("home", &self.home)
            .field("name", &self.me.name)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// This device's randomness as a `CryptoRng` ([`Options::entropy`]).
    pub(crate) fn rng(&self) -> EntropyRng<'_> {
        self.options.entropy.rng()
    }

    /// `N` random bytes from this device's [`Options::entropy`].
    pub(crate) fn random<const N: usize>(&self) -> [u8; N] {
        self.options.entropy.array()
    }
}

/// The log's keys as this device holds them.
pub(crate) struct LogKeys {
    pub(crate) log_id: Id32,
    pub(crate) epoch: u32,
    pub(crate) key: EpochKey,
    pub(crate) device: [u8; 32],
}

impl LogKeys {
    /// Seals `event` into the record to append: the epoch AEAD binds the epoch, the
    /// author and the guard (`(stream tag, expected version)`).
    pub(crate) fn seal(
        &self,
        event: &LogEvent,
        guard: Option<([u8; 32], i64)>,
        entropy: &dyn Entropy,
    ) -> Result<RecordIn, ClientError> {
        let context = RecordContext {
            log_id: self.log_id.0,
            epoch: self.epoch,
            author: event.author,
            guard: guard.as_ref().map(|(t, v)| (&t[..], *v)),
        };
        let sealed = seal_event(&self.key, &context, event, &mut entropy.rng())?;
        Ok(RecordIn {
            epoch: i64::from(self.epoch),
            nonce: HexBytes(sealed.nonce.to_vec()),
            ciphertext: HexBytes(sealed.ciphertext),
            guard: guard.map(|(t, v)| Guard {
                stream_tag: HexBytes(t.to_vec()),
                expected_version: v,
            }),
        })
    }
}

impl LogKeys {
    /// A record's hash (`chorus_core::record_hash`), from what the relay stores.
    pub(crate) fn record_hash(
        &self,
        epoch: i64,
        author: &[u8; 32],
        guard: Option<&Guard>,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> [u8; 32] {
        chorus_core::record_hash(
            &self.log_id.0,
            u32::try_from(epoch).unwrap_or(u32::MAX),
            author,
            guard.map(|g| (g.stream_tag.0.as_slice(), g.expected_version)),
            nonce,
            ciphertext,
        )
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
