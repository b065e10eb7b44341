#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What one message costs its sender when identities have several devices (DESIGN §6):
//! 1×1, 5×1 and 5×5 devices (identity × contact). The aim is that nothing grows with
//! the number of devices — a per-device design (Signal's) encrypts and uploads once per
//! recipient device and once per own sibling.
//!
//! Set-up: a real relay (axum, SQLite file, `synchronous=FULL`) in this process, every
//! device with its own SQLite store. One device of alice sends 200 messages, one at a
//! time; the siblings and bob's devices are idle meanwhile. Measured per message:
//! - **time**: wall clock of `send` (for a contact on our relay, the bundled send:
//!   one request carrying the guarded `Sent` record and the envelope, then the fold);
//! - **relay requests** and **local commits** (SQLite transactions of the sender's
//!   store, counted by its commit hook) per send;
//! - **CPU**: this process's user + system CPU (`/proc/self/stat`), which includes the
//!   in-process relay — an upper bound for the sender alone;
//! - **bytes**: what the sender stored at relays — its log records' ciphertext plus the
//!   envelope (the JSON bodies carry them hex-encoded, about twice that on the wire).
//!
//! Then the catch-up: the time for each idle device to fold the log and read the
//! mailboxes (`sync`). Each configuration runs five times, interleaved with the others
//! so that a slow spell of the (virtual) disk falls on all of them; the row shown is the
//! run with the median time. Two rows put bob on a second relay: the send then takes the
//! outbox path (post, then `Delivered`), the cost before the bundled send, measured in
//! the same run. `cargo bench -p chorus-client --bench constellation`.

mod common;

use std::path::Path;
use std::time::Instant;

use chorus_client::Device;
use chorus_relay_api::Id32;
use common::{cpu_time, identity};

const MESSAGES: usize = 200;

/// Ciphertext bytes in the log after `after`, and the new head.
async fn log_bytes(d: &Device, mut after: i64) -> (usize, i64) {
    let mut bytes = 0;
    loop {
        let page = d.relay().read_records(after, 64).await.unwrap();
        if page.records.is_empty() {
            return (bytes, after);
        }
        for r in &page.records {
            bytes += r.ciphertext.0.len() + r.nonce.0.len();
            after = r.seq;
        }
    }
}

/// Envelope bytes in every mailbox `d`'s identity owns (read from the relay).
async fn mailbox_bytes(d: &Device) -> usize {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        d.home().join(chorus_client::STORE_FILE).display()
    ))
    .await
    .unwrap();
    let ids: Vec<Vec<u8>> = sqlx::query_scalar("SELECT mailbox_id FROM mailboxes")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut total = 0;
    for id in ids {
        let id = Id32(id.as_slice().try_into().unwrap());
        let mut after = 0;
        loop {
            let page = d.relay().read_mailboxes(&[(id, after)], 256).await.unwrap();
            let envs = &page.results[0].envelopes;
            if envs.is_empty() {
                break;
            }
            for e in envs {
                total += e.payload.0.len();
                after = e.seq;
            }
        }
    }
    total
}

/// One configuration's numbers, per send.
struct Cost {
    wall_ms: f64,
    cpu_ms: f64,
    requests: f64,
    commits: f64,
    log_bytes: f64,
    envelope_bytes: f64,
    slowest_catch_up_ms: f64,
    idle: usize,
}

/// `a` devices of alice send to `b` devices of bob; bob's identity lives on
/// `bob_url` (the same relay as alice's for the bundled send, another one for the
/// outbox path).
async fn run(url: &str, bob_url: &str, dir: &Path, a: usize, b: usize) -> Cost {
    let alice = identity(&dir.join("a"), url, "alice", a).await;
    let bob = identity(&dir.join("b"), bob_url, "bob", b).await;
    let code = bob[0].invite().await.unwrap();
    alice[0].accept(&code, Some("bob")).await.unwrap();
    bob[0].sync().await.unwrap();
    bob[0].send("alice", "hi").await.unwrap();
    for d in alice.iter().chain(&bob) {
        d.sync().await.unwrap();
    }
    let (_, head) = log_bytes(&alice[0], 0).await;
    let before_envelopes = mailbox_bytes(&bob[0]).await;
    let text = "x".repeat(100);
    let (requests, commits) = (alice[0].relay().requests(), alice[0].local_commits());
    let cpu = cpu_time();
    let start = Instant::now();
    for _ in 0..MESSAGES {
        alice[0].send("bob", &text).await.unwrap();
    }
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu;
    let requests = alice[0].relay().requests() - requests;
    let commits = alice[0].local_commits() - commits;
    let (log, _) = log_bytes(&alice[0], head).await;
    let envelopes = mailbox_bytes(&bob[0]).await - before_envelopes;
    let mut catch_up = Vec::new();
    for d in alice[1..].iter().chain(&bob) {
        let t = Instant::now();
        d.sync().await.unwrap();
        catch_up.push(t.elapsed());
    }
    assert_eq!(
        bob[b - 1].history("alice", 1000).await.unwrap().len(),
        MESSAGES + 1
    );
    let n = MESSAGES as f64;
    Cost {
        wall_ms: wall.as_secs_f64() * 1e3 / n,
        cpu_ms: cpu.as_secs_f64() * 1e3 / n,
        requests: requests as f64 / n,
        commits: commits as f64 / n,
        log_bytes: log as f64 / n,
        envelope_bytes: envelopes as f64 / n,
        slowest_catch_up_ms: catch_up
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        idle: catch_up.len(),
    }
}

/// The run with the median time of `runs`.
fn median(mut runs: Vec<Cost>) -> Cost {
    runs.sort_by(|x, y| x.wall_ms.total_cmp(&y.wall_ms));
    runs.swap_remove(runs.len() / 2)
}

const ROUNDS: usize = 5;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "| identity × contact devices | time per send | CPU per send (process, incl. relay) | relay requests per send | local commits per send | bytes stored per send (log + envelope) | slowest idle device's catch-up after {MESSAGES} sends |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // (alice's devices, bob's devices, bob on alice's relay): the bundled send, and
    // the outbox path (post, then `Delivered`) for a contact on another relay.
    let configs = [
        (1, 1, true),
        (5, 1, true),
        (5, 5, true),
        (1, 1, false),
        (5, 1, false),
    ];
    let mut results: Vec<Vec<Cost>> = configs.iter().map(|_| Vec::new()).collect();
    // Rounds interleave the configurations, so a slow spell of the disk falls on
    // all of them; each row is the round with the median time.
    for _ in 0..ROUNDS {
        for (&(a, b, same), out) in configs.iter().zip(&mut results) {
            let dir = tempfile::tempdir().unwrap();
            out.push(rt.block_on(async {
                let url = common::relay(&dir.path().join("r1")).await;
                let bob_url = if same {
                    url.clone()
                } else {
                    common::relay(&dir.path().join("r2")).await
                };
                run(&url, &bob_url, dir.path(), a, b).await
            }));
        }
    }
    for (&(a, b, same), runs) in configs.iter().zip(results) {
        let c = median(runs);
        let how = if same {
            "bundled"
        } else {
            "contact on another relay"
        };
        println!(
            "| {a}×{b} ({how}) | {:.2} ms | {:.2} ms | {:.2} | {:.2} | {:.0} B + {:.0} B = {:.0} B | {:.0} ms ({} devices) |",
            c.wall_ms,
            c.cpu_ms,
            c.requests,
            c.commits,
            c.log_bytes,
            c.envelope_bytes,
            c.log_bytes + c.envelope_bytes,
            c.slowest_catch_up_ms,
            c.idle,
        );
    }
}
