//! The Chorus relay: an untrusted store-and-forward server.
//!
//! It stores and forwards ciphertext for identities whose devices form one
//! constellation (DESIGN §4, §9): each identity's encrypted, append-only
//! constellation log with optimistic-concurrency guards; mailboxes contacts post
//! envelopes to; a prekey directory; encrypted blobs; rendezvous channels for
//! linking; presence. It sees opaque ids, sizes and timing — never plaintext,
//! contacts or device names — and is built to stay correct under concurrent
//! clients, restarts and hostile input: every input is bounded
//! ([`limits`]), every refusal is a short machine-readable code ([`error`]), and
//! nothing from the network can make it panic.
//!
//! The HTTP API is documented in `docs/relay-api.md`; the request and response
//! bodies are in [`api`]. Storage is the [`RelayStore`] trait with a SQLite
//! backend (embedded default) and a PostgreSQL backend (several relay processes
//! over one database, woken across processes by `LISTEN/NOTIFY`).
//!
//! Start one in-process (tests, the simulator, `chorus relay serve`):
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use chorus_relay::{AppState, Limits, SqliteStore, SystemClock, run};
//!
//! let store = SqliteStore::open(std::path::Path::new("relay.sqlite"), 4).await?;
//! let state = AppState::new(Arc::new(store), Arc::new(SystemClock), Limits::default()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! run(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
mod authority;
pub mod batcher;
pub mod clock;
pub mod error;
mod extract;
pub mod limits;
mod page;
pub mod presence;
pub mod proxy;
pub mod ratelimit;
mod routes;
#[cfg(feature = "cli")]
pub mod serve;
pub mod store;
mod ws;

/// The JSON contract, re-exported: one definition for relay and client.
pub use chorus_relay_api as api;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ApiError, StoreError, StoreResult};
pub use limits::{Limits, Rate};
pub use store::{Event, PostgresStore, RelayStore, SqliteStore};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use chorus_crypto::{Entropy, SystemEntropy};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::batcher::Batcher;
use crate::limits::{EVENT_BUS_CAPACITY, SWEEP_INTERVAL};
use crate::presence::Presence;
use crate::ratelimit::RateLimiter;

/// Default TCP port of `chorus-relay serve`.
pub const DEFAULT_PORT: u16 = 7470;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RelayStore>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    limits: Limits,
    rate: RateLimiter,
    presence: Arc<Presence>,
    bus: broadcast::Sender<Event>,
    batcher: Batcher,
    sockets: ws::Sockets,
    closing: watch::Sender<bool>,
}

impl AppState {
    /// Wires a store, a clock and limits together, starts the group-commit
    /// workers and (for PostgreSQL) the cross-process listener. Challenges and
    /// tokens are drawn from the operating system.
    pub async fn new(
        store: Arc<dyn RelayStore>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> StoreResult<Self> {
        Self::with_entropy(store, clock, Arc::new(SystemEntropy), limits).await
    }

    /// As [`new`](Self::new), drawing challenges and tokens from `entropy` (a seeded
    /// stream replays a run byte for byte: tests and the simulator).
    pub async fn with_entropy(
        store: Arc<dyn RelayStore>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        limits: Limits,
    ) -> StoreResult<Self> {
        let (bus, _) = broadcast::channel(EVENT_BUS_CAPACITY);
        store.listen(bus.clone()).await?;
        // Heartbeats and revocations heard from other processes update presence
        // here (presence is never stored).
        let presence = Arc::new(Presence::default());
        let mut events = bus.subscribe();
        let presence_for_task = presence.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Heartbeat {
                        log_id,
                        device_id,
                        at_ms,
                    }) => {
                        presence_for_task.beat(log_id, device_id, at_ms);
                    }
                    Ok(Event::DeviceRevoked { log_id, device_id }) => {
                        presence_for_task.forget(log_id, device_id)
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let rate = RateLimiter::new(limits.max_rate_buckets);
        let batcher = Batcher::start(store.clone(), bus.clone());
        let (closing, _) = watch::channel(false);
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                clock,
                entropy,
                limits,
                rate,
                presence,
                bus,
                batcher,
                sockets: ws::Sockets::default(),
                closing,
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &dyn RelayStore {
        self.inner.store.as_ref()
    }

    /// `N` random bytes from the injected source.
    pub(crate) fn random<const N: usize>(&self) -> [u8; N] {
        self.inner.entropy.array()
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The operational limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub(crate) fn rate(&self) -> &RateLimiter {
        &self.inner.rate
    }

    pub(crate) fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    pub(crate) fn batcher(&self) -> &Batcher {
        &self.inner.batcher
    }

    pub(crate) fn sockets(&self) -> &ws::Sockets {
        &self.inner.sockets
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.bus.subscribe()
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Tells the other processes (only) about events.
    pub(crate) async fn publish(&self, events: &[Event]) {
        if let Err(e) = self.inner.store.publish(events).await {
            tracing::warn!(error = %e, "could not notify other relay processes");
        }
    }

    /// Tells this process's sockets and the other processes about events.
    pub(crate) async fn emit(&self, events: Vec<Event>) {
        for e in &events {
            let _ = self.inner.bus.send(e.clone());
        }
        self.publish(&events).await;
    }

    /// Deletes expired envelopes and channels now.
    pub async fn sweep(&self) -> StoreResult<store::Swept> {
        self.inner.store.sweep(self.now()).await
    }
}

/// The relay's HTTP API as an axum router.
pub fn app(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Serves the relay on `listener` until `shutdown` resolves, sweeping expired
/// data every [`SWEEP_INTERVAL`]. Open WebSockets are closed on shutdown.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper_state = state.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            match sweeper_state.sweep().await {
                Ok(s) if s.envelopes + s.file_parts + s.channels > 0 => {
                    tracing::info!(
                        envelopes = s.envelopes,
                        file_parts = s.file_parts,
                        channels = s.channels,
                        "swept expired data"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    });
    let closing = state.inner.closing.clone();
    let router = app(state);
    // Small request/response pairs: never let Nagle hold a reply back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = closing.send(true);
    })
    .await;
    sweeper.abort();
    result
}
