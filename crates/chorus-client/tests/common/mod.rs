//! Shared set-up for the client's integration tests: a real relay (the axum app on a
//! loopback port with its SQLite file) and a clock tests can move.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chorus_client::{Backoff, Clock, Options};
use chorus_relay::serve::ServeArgs;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub struct Relay {
    pub url: String,
    addr: SocketAddr,
    data: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    state: chorus_relay::AppState,
}

impl Relay {
    pub async fn start() -> Relay {
        let data = tempfile::tempdir().unwrap();
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), data).await
    }

    pub async fn start_at(listen: SocketAddr, data: TempDir) -> Relay {
        Self::start_with(listen, data, |_| {}).await
    }

    /// A relay whose flags `set` changes first (limits an attack test runs into).
    pub async fn start_with(
        listen: SocketAddr,
        data: TempDir,
        set: impl FnOnce(&mut ServeArgs),
    ) -> Relay {
        let mut args = ServeArgs::embedded(listen, data.path().to_owned());
        args.no_rate_limits = true;
        set(&mut args);
        let (listener, state) = args.bind().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(chorus_relay::run(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        Relay {
            url: format!("http://{addr}"),
            addr,
            data,
            stop: Some(stop),
            task: Some(task),
            state,
        }
    }

    /// Runs the relay's sweep now; how many envelopes it deleted.
    pub async fn sweep(&self) -> u64 {
        self.state.sweep().await.unwrap().envelopes
    }

    /// How many blobs the relay stores (read from its SQLite file).
    pub async fn blobs(&self) -> i64 {
        let path = self.data.path().join(chorus_relay::serve::SQLITE_FILE);
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM blobs")
            .fetch_one(&pool)
            .await
            .unwrap()
    }

    /// Every envelope the relay stores, with its mailbox, read from its SQLite file (what
    /// the relay's operator, or a thief of its disk, holds).
    pub async fn envelopes(&self) -> Vec<(chorus_relay_api::Id32, chorus_relay_api::EnvelopeOut)> {
        let path = self.data.path().join(chorus_relay::serve::SQLITE_FILE);
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
            .await
            .unwrap();
        type Row = (Vec<u8>, i64, Vec<u8>, Vec<u8>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT mailbox_id, seq, envelope_id, payload, received_ms FROM envelopes ORDER BY received_ms, seq",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(mailbox, seq, id, payload, received_ms)| {
                (
                    chorus_relay_api::Id32(mailbox.try_into().unwrap()),
                    chorus_relay_api::EnvelopeOut {
                        seq,
                        envelope_id: chorus_relay_api::Id16(id.try_into().unwrap()),
                        payload: chorus_relay_api::HexBytes(payload),
                        received_ms,
                    },
                )
            })
            .collect()
    }

    /// Stops the relay; its SQLite file stays for a restart.
    pub async fn stop(mut self) -> (SocketAddr, TempDir) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        (self.addr, self.data)
    }
}

/// A clock tests can move.
#[derive(Clone, Default)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn advance_days(&self, days: i64) {
        self.0.fetch_add(days * 24 * 3600 * 1000, Ordering::SeqCst);
    }

    /// One second later: messages sent after this sort after those sent before.
    pub fn tick(&self) {
        self.0.fetch_add(1000, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        1_800_000_000_000 + self.0.load(Ordering::SeqCst)
    }
}

pub fn options(clock: &TestClock) -> Options {
    Options {
        backoff: Backoff {
            attempts: 2,
            first: Duration::from_millis(20),
            max: Duration::from_millis(50),
        },
        clock: Arc::new(clock.clone()),
        argon2_memory_kib: 256,
        argon2_iterations: 1,
        sibling_delivery: Duration::from_secs(30),
        allow_private_relays: false,
        ..Options::default()
    }
}

/// A new identity `name` with one device in `dir/name` (key-file store).
pub async fn device(
    dir: &std::path::Path,
    name: &str,
    relay: &Relay,
    clock: &TestClock,
) -> chorus_client::Device {
    chorus_client::Device::init(
        &dir.join(name),
        chorus_client::Unlock::KeyFile,
        &relay.url,
        name,
        options(clock),
    )
    .await
    .unwrap()
}

/// The texts of the messages among `events`, in order.
pub fn texts(events: &[chorus_client::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            chorus_client::Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

/// Links a new device called `home` into `existing`'s identity, in `dir/home` (both
/// sides in this process: `chorus_client::link::link_locally`).
pub async fn link(
    existing: &chorus_client::Device,
    dir: &std::path::Path,
    home: &str,
    clock: &TestClock,
) -> chorus_client::Device {
    chorus_client::link::link_locally(
        existing,
        &dir.join(home),
        home,
        chorus_client::Unlock::KeyFile,
        options(clock),
    )
    .await
    .unwrap()
    .0
}

/// The names `chorus devices` lists on `d`, in its order.
pub async fn device_names(d: &chorus_client::Device) -> Vec<String> {
    d.devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect()
}
