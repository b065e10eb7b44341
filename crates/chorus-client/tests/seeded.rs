#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A whole run from one seed, twice: the same bytes everywhere.
//!
//! Two identities (each one device) and a relay, every one of them given its
//! randomness ([`SeededEntropy`]) and its clock: an invitation, a first message, a
//! reply, a sync. Run twice with one seed, every row of both devices' stores, their
//! key files and every row of the relay's database are equal; run with another seed
//! they are not. This is what lets the simulator replay a failure, and it proves no
//! key, nonce or id is drawn behind the device's back (one draw from the operating
//! system would make the two runs differ).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chorus_client::{Device, Unlock};
use chorus_crypto::SeededEntropy;
use chorus_relay::{AppState, Limits, ManualClock, SqliteStore};
use sha2::{Digest, Sha256};
// Table and column names come from the database's own catalogue.
use sqlx::{AssertSqlSafe, Row};

mod common;
use common::{TestClock, options};

/// Every table's rows (each row quoted by SQLite, the rows sorted), by table.
type Dump = BTreeMap<String, Vec<String>>;

/// A seed for one participant of a run.
fn seed(run: u64, who: &str) -> [u8; 32] {
    Sha256::digest([&run.to_be_bytes()[..], who.as_bytes()].concat()).into()
}

async fn dump(db: &Path) -> Dump {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name != '_sqlx_migrations'
         ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut out = Dump::new();
    for table in tables {
        let columns: Vec<String> =
            sqlx::query(AssertSqlSafe(format!("PRAGMA table_info(\"{table}\")")))
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>("name"))
                .collect();
        let quoted = columns
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let mut rows: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT {quoted} FROM \"{table}\"")))
                .fetch_all(&pool)
                .await
                .unwrap();
        rows.sort();
        out.insert(table, rows);
    }
    pool.close().await;
    out
}

/// What one run leaves behind: each store's rows and key file, the relay's rows.
#[derive(Debug, PartialEq, Eq)]
struct Traces {
    alice: (Dump, Vec<u8>),
    bob: (Dump, Vec<u8>),
    relay: Dump,
}

/// One run with `run`'s seeds, its relay on `listen`; returns the traces and the
/// address it listened on (the next run reuses it: the URL is in the stores).
async fn run(run: u64, listen: SocketAddr) -> (Traces, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let relay_db = dir.path().join("relay.sqlite");
    let store = SqliteStore::open(&relay_db, 4).await.unwrap();
    let state = AppState::with_entropy(
        Arc::new(store),
        Arc::new(ManualClock::new(1_800_000_000_000)),
        Arc::new(SeededEntropy::new(seed(run, "relay"))),
        Limits::default().unlimited_rates(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(chorus_relay::run(listener, state, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}");

    let clock = TestClock::default();
    let device = |who: &'static str| {
        let mut o = options(&clock);
        o.entropy = Arc::new(SeededEntropy::new(seed(run, who)));
        let home = dir.path().join(who);
        let url = url.clone();
        async move {
            Device::init(&home, Unlock::KeyFile, &url, who, o)
                .await
                .unwrap()
        }
    };
    let alice = device("alice").await;
    let bob = device("bob").await;
    let code = alice.invite().await.unwrap();
    clock.tick();
    let (alias, _) = bob.accept(&code, None).await.unwrap();
    bob.send(&alias, "hello from a seed").await.unwrap();
    clock.tick();
    alice.sync().await.unwrap();
    alice.send("bob", "and back").await.unwrap();
    clock.tick();
    bob.sync().await.unwrap();
    assert_eq!(bob.history(&alias, 10).await.unwrap().len(), 2);
    drop((alice, bob));
    let _ = stop.send(());
    relay.await.unwrap().unwrap();

    let home = |who: &str| dir.path().join(who);
    let key = |who: &str| std::fs::read(home(who).join(chorus_client::KEY_FILE)).unwrap();
    let traces = Traces {
        alice: (
            dump(&home("alice").join(chorus_client::STORE_FILE)).await,
            key("alice"),
        ),
        bob: (
            dump(&home("bob").join(chorus_client::STORE_FILE)).await,
            key("bob"),
        ),
        relay: dump(&relay_db).await,
    };
    (traces, addr)
}

#[tokio::test]
async fn two_devices_and_a_relay_from_one_seed_leave_the_same_bytes_twice() {
    let (first, addr) = run(1, SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let (again, _) = run(1, addr).await;
    let (other, _) = run(2, addr).await;
    // Something was recorded: messages, envelopes, log records, sessions.
    for table in ["messages", "sessions", "contacts"] {
        assert!(!first.alice.0[table].is_empty(), "alice's {table}");
    }
    for table in ["records", "envelopes", "auth_sessions"] {
        assert!(!first.relay[table].is_empty(), "relay's {table}");
    }
    for (name, a, b) in [
        ("alice", &first.alice, &again.alice),
        ("bob", &first.bob, &again.bob),
    ] {
        assert_eq!(a.1, b.1, "{name}'s key file");
        for (table, rows) in &a.0 {
            assert_eq!(rows, &b.0[table], "{name}'s {table}");
        }
    }
    for (table, rows) in &first.relay {
        assert_eq!(rows, &again.relay[table], "relay's {table}");
    }
    assert_eq!(first, again);
    // Another seed: other keys, other ids, other ciphertexts.
    assert_ne!(first.alice.1, other.alice.1);
    assert_ne!(first.relay["records"], other.relay["records"]);
}
