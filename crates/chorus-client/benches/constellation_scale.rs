#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! How the constellation scales with the size of what it holds (issue 5):
//!
//! * **log catch-up**: alice's laptop escrows 50,000 messages to bob — 100,000 log
//!   events (a `Sent` with its ratchet delta and transcript, and its `Delivered`, as a
//!   real send appends them; 32 messages per atomic append) — while her phone is
//!   offline. Then the phone folds the whole tail (`sync_log`): events applied per
//!   second, wall clock and this process's CPU (which includes the in-process relay).
//! * **envelope backlog**: bob sends alice 10,000 real envelopes while her phone is
//!   offline; then the phone receives them (`sync`): messages stored per second.
//! * **the floor**: after each, as many rows inserted into a fresh SQLite file with the
//!   store's settings, one prepared statement per row, one transaction, same driver.
//! * **linking into 1,000 contacts**: alice has 1,000 contacts (each a real PQXDH
//!   session, made through the same guarded `ContactUpserted` + `Sent` append as
//!   `accept`); a new device is linked with `link_locally` (the code path of `chorus
//!   link`: channel, SAS, roster entry, checkpoint export, seal, upload, bundle, import,
//!   tail fold) and brings 100,000 messages of history with it (sealed 1 MiB chunks,
//!   uploaded, downloaded and imported; the history is put into alice's store directly,
//!   as months of conversation would leave it). Measured: time from the offer to a
//!   device that can send, and the new device's store size.
//!
//! Contacts and bursts are built with the `bench` feature's shortcuts
//! (`src/bench.rs`): the same event and fold code as the user-facing calls, minus the
//! posting of 50,000 envelopes nobody would read. A real relay (axum, SQLite file,
//! `synchronous=FULL`) runs in this process; every device has its own SQLite store.
//!
//! `cargo bench -p chorus-client --bench constellation_scale` (about three minutes).
//! `CHORUS_BENCH_EVENTS`, `CHORUS_BENCH_BACKLOG`, `CHORUS_BENCH_CONTACTS` and
//! `CHORUS_BENCH_HISTORY` scale the parts down for a quick look (0 skips a part).

mod common;

use std::path::Path;
use std::time::Instant;

use chorus_client::link::link_locally;
use chorus_client::{Options, Unlock};
use chorus_core::{LocalIdentity, MemoryPrekeyStore};
use chorus_wire::PrekeyBundle;
use common::{cpu_time, identity};

/// Messages per atomic append: two records each, the relay's 64-record batch bound.
const PER_APPEND: usize = 32;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn catch_up(url: &str, dir: &Path, events: usize) {
    let alice = identity(&dir.join("a"), url, "alice", 2).await;
    let bob = identity(&dir.join("b"), url, "bob", 1).await;
    let code = bob[0].invite().await.unwrap();
    alice[0].accept(&code, Some("bob")).await.unwrap();
    for d in alice.iter().chain(&bob) {
        d.sync().await.unwrap();
    }
    let messages = events / 2;
    let text = "x".repeat(100);
    let start = Instant::now();
    alice[0]
        .bench_burst("bob", &text, messages, PER_APPEND, false)
        .await
        .unwrap();
    let produced = start.elapsed();
    let cpu = cpu_time();
    let start = Instant::now();
    alice[1].sync_log().await.unwrap();
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu;
    let history = alice[1].history("bob", u32::MAX).await.unwrap();
    assert_eq!(history.len(), messages, "every escrowed send folded");
    // What every later command pays once: opening the store and restoring the folded
    // state (100,000 seen ids and chain rows) before its first fold.
    let start = Instant::now();
    let reopened = chorus_client::Device::open(
        &dir.join("a").join("alice1"),
        Unlock::KeyFile,
        Options::default(),
    )
    .await
    .unwrap();
    assert!(reopened.sync_log().await.unwrap().is_empty());
    let restore = start.elapsed();
    println!(
        "| log catch-up | {events} events ({messages} × `Sent` + `Delivered`) | {:.1} s | {:.0} events/s | CPU {:.1} s (process, incl. relay) | producing them (laptop: encrypt, append, fold its own): {:.1} s; a later command's open + restore + empty fold: {:.2} s |",
        wall.as_secs_f64(),
        events as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        produced.as_secs_f64(),
        restore.as_secs_f64(),
    );
}

/// Bob's single device sends `messages` real envelopes to alice while her phone is
/// offline; then the phone receives the backlog (`sync`: read, decrypt, store).
async fn backlog(url: &str, dir: &Path, messages: usize) {
    let alice = identity(&dir.join("a"), url, "alice", 1).await;
    let bob = identity(&dir.join("b"), url, "bob", 1).await;
    let code = alice[0].invite().await.unwrap();
    bob[0].accept(&code, Some("alice")).await.unwrap();
    alice[0].sync().await.unwrap();
    bob[0].send("alice", "hello").await.unwrap();
    alice[0].sync().await.unwrap();
    bob[0].sync().await.unwrap();
    let text = "x".repeat(100);
    bob[0]
        .bench_burst("alice", &text, messages, PER_APPEND, true)
        .await
        .unwrap();
    let cpu = cpu_time();
    let start = Instant::now();
    alice[0].sync().await.unwrap();
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu;
    let history = alice[0].history("bob", u32::MAX).await.unwrap();
    assert_eq!(history.len(), messages + 1, "every envelope received");
    println!(
        "| envelope backlog | {messages} messages from one contact | {:.2} s | {:.0} messages/s | CPU {:.2} s (process, incl. relay) | |",
        wall.as_secs_f64(),
        messages as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64(),
    );
}

/// The floor: `rows` rows of the size of a history entry inserted into a fresh SQLite
/// file with the store's settings (WAL, `synchronous=FULL`), one prepared statement
/// per row, in one transaction, through the same driver.
async fn raw_insert_floor(dir: &Path, rows: usize) {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::{ConnectOptions, Connection};
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("floor.sqlite"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, value BLOB NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let value = vec![7u8; 140];
    let start = Instant::now();
    let mut tx = conn.begin().await.unwrap();
    for i in 0..rows as u64 {
        sqlx::query("INSERT INTO t (key, value) VALUES ($1, $2)")
            .bind(&[i.to_be_bytes(), i.to_le_bytes()].concat()[..])
            .bind(&value)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let wall = start.elapsed();
    println!(
        "| raw SQLite insert (floor) | {rows} rows, one transaction | {:.2} s | {:.0} rows/s | | |",
        wall.as_secs_f64(),
        rows as f64 / wall.as_secs_f64(),
    );
}

async fn link_into_contacts(url: &str, dir: &Path, contacts: usize, history: usize) {
    let alice = identity(&dir.join("a"), url, "alice", 1).await;
    let mut rng = rand_core::UnwrapErr(rand::rngs::SysRng);
    let start = Instant::now();
    for i in 0..contacts {
        let peer = LocalIdentity::generate(&mut rng);
        let mut prekeys = MemoryPrekeyStore::default();
        let bundle = PrekeyBundle {
            identity: peer.keys().clone(),
            signed_prekey: prekeys.new_signed_prekey(&peer, &mut rng).unwrap(),
            one_time_prekey: Some(prekeys.new_one_time_prekey(&mut rng)),
            pq_prekey: prekeys.new_pq_prekey(&peer, true, &mut rng).unwrap(),
        };
        alice[0]
            .bench_add_contact(&bundle, &format!("contact {i}"))
            .await
            .unwrap();
    }
    let aliases: Vec<String> = (0..contacts).map(|i| format!("contact {i}")).collect();
    alice[0]
        .bench_history(&aliases, history, &"x".repeat(100))
        .await
        .unwrap();
    let built = start.elapsed();
    let home = dir.join("a").join("new");
    let cpu = cpu_time();
    let start = Instant::now();
    let (device, _, _) = link_locally(
        &alice[0],
        &home,
        "new device",
        Unlock::KeyFile,
        Options::default(),
    )
    .await
    .unwrap();
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu;
    assert_eq!(device.contacts().await.unwrap().len(), contacts);
    let shown = device.history("contact 0", u32::MAX).await.unwrap().len();
    assert_eq!(shown, history.div_ceil(contacts.max(1)));
    device
        .send("contact 0", "from the new device")
        .await
        .unwrap();
    // The store and its write-ahead log.
    let store: u64 = std::fs::read_dir(&home)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "| link a device | {contacts} contacts, {history} messages of history | {:.2} s | CPU {:.2} s (process: both devices and the relay) | new device's home {:.1} MB | adding the contacts and history: {:.1} s |",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        store as f64 / 1e6,
        built.as_secs_f64(),
    );
}

fn main() {
    let events = env_or("CHORUS_BENCH_EVENTS", 100_000);
    let contacts = env_or("CHORUS_BENCH_CONTACTS", 1_000);
    let history = env_or("CHORUS_BENCH_HISTORY", 100_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("| what | size | time | rate / CPU | | |");
    println!("|---|---|---|---|---|---|");
    // A size of 0 skips that part (`CHORUS_BENCH_EVENTS=0 CHORUS_BENCH_BACKLOG=0` runs
    // only the link).
    if events > 0 {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let url = common::relay(dir.path()).await;
            catch_up(&url, dir.path(), events).await;
            raw_insert_floor(dir.path(), events).await;
        });
    }
    let messages = env_or("CHORUS_BENCH_BACKLOG", 10_000);
    if messages > 0 {
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let url = common::relay(dir.path()).await;
            backlog(&url, dir.path(), messages).await;
            raw_insert_floor(dir.path(), messages).await;
        });
    }
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let url = common::relay(dir.path()).await;
        link_into_contacts(&url, dir.path(), contacts, history).await;
    });
}
