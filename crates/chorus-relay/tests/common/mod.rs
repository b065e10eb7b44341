//! Test harness: a relay on 127.0.0.1 with an ephemeral port over a fresh database,
//! plus a small HTTP client that speaks the relay API.
//!
//! SQLite runs always (a temporary file). PostgreSQL runs when
//! `CHORUS_TEST_POSTGRES_URL` is set: each relay gets its own database, created
//! through that admin URL and dropped afterwards, so tests never see each other's
//! data. Without the variable, PostgreSQL tests print that they were skipped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chorus_crypto::{DeviceDhPublic, DevicePublicKey, RootPublicKey};
use chorus_relay::api::{Id32, auth_message};
use chorus_relay::{AppState, Limits, ManualClock, PostgresStore, RelayStore, SqliteStore};
use chorus_wire::{RosterBody, RosterEntry, SecurityLevel};
use ed25519_dalek::{Signer, SigningKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tokio::sync::oneshot;

pub const PG_ENV: &str = "CHORUS_TEST_POSTGRES_URL";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database that is removed when dropped.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    /// A fresh database, or `None` (with a message) if PostgreSQL is not configured.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(TestDb::Sqlite(tempfile::tempdir().unwrap())),
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var(PG_ENV) else {
                    eprintln!(
                        "PostgreSQL skipped: set {PG_ENV} to run this test against PostgreSQL"
                    );
                    return None;
                };
                let name = format!(
                    "chorus_relay_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .subsec_nanos()
                );
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                admin
                    .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .unwrap();
                let url = match admin_url.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => panic!("bad {PG_ENV}"),
                };
                Some(TestDb::Postgres {
                    admin_url,
                    name,
                    url,
                })
            }
        }
    }

    pub async fn store(&self) -> Arc<dyn RelayStore> {
        match self {
            TestDb::Sqlite(dir) => Arc::new(
                SqliteStore::open(&dir.path().join("relay.sqlite"), 4)
                    .await
                    .unwrap(),
            ),
            TestDb::Postgres { url, .. } => Arc::new(PostgresStore::connect(url, 6).await.unwrap()),
        }
    }

    /// The `--database` argument for a relay process on this database.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => {
                format!("sqlite://{}", dir.path().join("relay.sqlite").display())
            }
            TestDb::Postgres { url, .. } => url.clone(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside async context; use a private runtime on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = admin
                            .execute(AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A relay served in-process over real HTTP.
pub struct Relay {
    pub base: String,
    pub ws_base: String,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    pub backend: Backend,
    // Last: dropped after the server stops.
    _db: TestDb,
}

pub const START_MS: i64 = 1_800_000_000_000;

impl Relay {
    pub async fn start(backend: Backend) -> Option<Relay> {
        Self::with_limits(backend, Limits::default()).await
    }

    pub async fn with_limits(backend: Backend, limits: Limits) -> Option<Relay> {
        let db = TestDb::create(backend).await?;
        let store = db.store().await;
        let clock = ManualClock::new(START_MS);
        let state = AppState::new(store, Arc::new(clock.clone()), limits)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(chorus_relay::run(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Some(Relay {
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            clock,
            http: reqwest::Client::new(),
            state,
            shutdown: Some(tx),
            backend,
            _db: db,
        })
    }

    /// Sends a request; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    /// Creates a log whose first device is `device` (a `shared-root` genesis signed
    /// by [`root`]).
    pub async fn create_log(&self, log: &Hex32, device: &Device) {
        let (s, v) = self
            .post(
                "/v1/logs",
                None,
                json!({ "log_id": log.0, "genesis": genesis(log, device, SecurityLevel::SharedRoot), "device_id": device.id }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    /// Registers `device` under `log` with a root-signed authorization.
    pub async fn add_device(
        &self,
        log: &Hex32,
        token: &str,
        device: &Device,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/logs/{}/devices", log.0),
            Some(token),
            json!({ "device_id": device.id, "authorization": authorize(log, device, &root()) }),
        )
        .await
    }

    /// Revokes `device` in `log` with a revocation signed by `signer`.
    pub async fn revoke_device(
        &self,
        log: &Hex32,
        token: &str,
        device: &Device,
        signer: &SigningKey,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/logs/{}/devices/{}/revoke", log.0, device.id),
            Some(token),
            json!({ "authorization": revocation(log, device, signer) }),
        )
        .await
    }

    /// Challenge, sign, session: a token for `device` in `log`.
    pub async fn login(&self, log: &Hex32, device: &Device) -> String {
        self.try_login(log, device).await.unwrap()
    }

    pub async fn try_login(
        &self,
        log: &Hex32,
        device: &Device,
    ) -> Result<String, (StatusCode, Value)> {
        let (s, v) = self
            .post(
                "/v1/auth/challenge",
                None,
                json!({ "log_id": log.0, "device_id": device.id }),
            )
            .await;
        if s != StatusCode::OK {
            return Err((s, v));
        }
        let challenge: Id32 = v["challenge"].as_str().unwrap().parse().unwrap();
        let log_id: Id32 = log.0.parse().unwrap();
        let dev_id: Id32 = device.id.parse().unwrap();
        let sig = device.key.sign(&auth_message(&challenge, &log_id, &dev_id));
        let (s, v) = self
            .post(
                "/v1/auth/session",
                None,
                json!({ "challenge": challenge.to_string(), "signature": hex::encode(sig.to_bytes()) }),
            )
            .await;
        if s == StatusCode::OK {
            Ok(v["token"].as_str().unwrap().to_string())
        } else {
            Err((s, v))
        }
    }

    /// A new log with one logged-in device.
    pub async fn identity(&self, seed: u8) -> (Hex32, Device, String) {
        let log = Hex32::from_seed(seed);
        let dev = Device::new(seed);
        self.create_log(&log, &dev).await;
        let token = self.login(&log, &dev).await;
        (log, dev, token)
    }

    /// Appends records (ciphertexts given as strings) with optional guards.
    pub async fn append(
        &self,
        log: &Hex32,
        token: &str,
        records: Vec<Value>,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/logs/{}/append", log.0),
            Some(token),
            json!({ "records": records }),
        )
        .await
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A record body with an optional guard.
pub fn record(ciphertext: &str, guard: Option<(&str, i64)>) -> Value {
    let mut r = json!({ "epoch": 1, "nonce": "000102", "ciphertext": hex::encode(ciphertext) });
    if let Some((tag, v)) = guard {
        r["guard"] = json!({ "stream_tag": hex::encode(tag), "expected_version": v });
    }
    r
}

/// A 32-byte id as hex.
#[derive(Clone, Debug, PartialEq)]
pub struct Hex32(pub String);

impl Hex32 {
    pub fn from_seed(seed: u8) -> Self {
        Hex32(hex::encode([seed; 32]))
    }
    pub fn from_u64(n: u64) -> Self {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b[31] = 0xee;
        Hex32(hex::encode(b))
    }
}

/// The root key of every test identity (the genesis binds it to one log).
pub fn root() -> SigningKey {
    SigningKey::from_bytes(&[0xaa; 32])
}

/// A signed roster entry, hex: what a client stores in its log and shows the relay.
/// The relay checks the signer and the log, not the chain, so position 1 will do.
pub fn roster_entry(log: &Hex32, body: &RosterBody, signer: &SigningKey) -> String {
    let log_id: [u8; 32] = hex::decode(&log.0).unwrap().try_into().unwrap();
    let genesis = matches!(body, RosterBody::Genesis { .. });
    let (index, prev) = if genesis {
        (0, None)
    } else {
        (1, Some([0; 32]))
    };
    let entry = RosterEntry::sign(log_id, index, prev, 1, body, |bytes| {
        let mut m = chorus_wire::ROSTER_CONTEXT.to_vec();
        m.push(0);
        m.extend_from_slice(bytes);
        let sig = chorus_crypto::Signature::from_bytes(signer.sign(&m).to_bytes());
        (signer.verifying_key().to_bytes(), sig)
    })
    .unwrap();
    hex::encode(entry.as_bytes())
}

/// A root-signed genesis of `log` naming `device` first.
pub fn genesis(log: &Hex32, device: &Device, level: SecurityLevel) -> String {
    roster_entry(
        log,
        &RosterBody::Genesis {
            root: RootPublicKey::from_bytes(root().verifying_key().to_bytes()).unwrap(),
            device: device.public(),
            device_dh: DeviceDhPublic::from_slice(&[9; 32]).unwrap(),
            level,
            name: "first".into(),
        },
        &root(),
    )
}

/// A `DeviceAuthorized` entry for `device`, signed by `signer`.
pub fn authorize(log: &Hex32, device: &Device, signer: &SigningKey) -> String {
    roster_entry(
        log,
        &RosterBody::DeviceAuthorized {
            device: device.public(),
            device_dh: DeviceDhPublic::from_slice(&[9; 32]).unwrap(),
            name: "another".into(),
        },
        signer,
    )
}

/// A `DeviceRevoked` entry for `device`, signed by `signer`.
pub fn revocation(log: &Hex32, device: &Device, signer: &SigningKey) -> String {
    roster_entry(
        log,
        &RosterBody::DeviceRevoked {
            device: device.public(),
        },
        signer,
    )
}

/// A device key.
pub struct Device {
    pub key: SigningKey,
    pub id: String,
}

impl Device {
    pub fn new(seed: u8) -> Device {
        let key = SigningKey::from_bytes(&[seed.wrapping_add(100); 32]);
        let id = hex::encode(key.verifying_key().to_bytes());
        Device { key, id }
    }

    pub fn public(&self) -> DevicePublicKey {
        DevicePublicKey::from_bytes(self.key.verifying_key().to_bytes()).unwrap()
    }
}

/// Runs `f` on a backend if it is available.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Postgres).await;
                }
            )*
        }
    };
}
