#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end client benchmarks on loopback: a real relay (axum, SQLite file) in this
//! process and two real devices (their own SQLite stores, `synchronous=FULL`).
//!
//! * **latency**: `send` on alice → the message is delivered by bob's `watch`
//!   (WebSocket push, decrypt, commit): p50 / p99 / max over 1,000 messages, one at a
//!   time. Printed, not asserted.
//! * **send rate** (criterion): one client's sustained `send` — encrypt, commit
//!   session + history + outbox, post, delete from outbox.
//!
//! `cargo bench -p chorus-client --bench e2e`. Rate limits are off in the relay (the
//! defaults would cap one mailbox at 10 posts/s).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{Device, Event, Options, Unlock};
use chorus_relay::serve::ServeArgs;
use criterion::Criterion;

const LATENCY_MESSAGES: usize = 1000;

async fn setup(dir: &Path) -> (Device, Arc<Device>) {
    let mut args = ServeArgs::embedded(SocketAddr::from(([127, 0, 0, 1], 0)), dir.join("relay"));
    args.no_rate_limits = true;
    let (listener, state) = args.bind().await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(chorus_relay::run(listener, state, std::future::pending()));
    let alice = Device::init(
        &dir.join("a"),
        Unlock::KeyFile,
        &url,
        "alice",
        Options::default(),
    )
    .await
    .unwrap();
    let bob = Device::init(
        &dir.join("b"),
        Unlock::KeyFile,
        &url,
        "bob",
        Options::default(),
    )
    .await
    .unwrap();
    let code = alice.invite().await.unwrap();
    bob.accept(&code, None).await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    (alice, Arc::new(bob))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = rt.block_on(setup(dir.path()));

    // Latency: bob watches; each received message is timestamped in the callback.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    {
        let bob = bob.clone();
        rt.spawn(async move {
            bob.watch(
                |e| {
                    if let Event::Message(m) = e {
                        let _ = tx.send((m.text.clone(), Instant::now()));
                    }
                    true
                },
                |link| {
                    if let Err(e) = link {
                        eprintln!("watch: {e}");
                    }
                },
            )
            .await
        });
    }
    let mut samples = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut samples = Vec::with_capacity(LATENCY_MESSAGES);
        for i in 0..LATENCY_MESSAGES + 50 {
            let text = format!("latency {i}");
            let start = Instant::now();
            alice.send("bob", &text).await.unwrap();
            let (got, at) = rx.recv().await.unwrap();
            assert_eq!(got, text);
            if i >= 50 {
                samples.push(at - start); // the first 50 warm up
            }
        }
        samples
    });
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "e2e latency send→watch over {} messages: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let mut group = c.benchmark_group("client");
    group.throughput(criterion::Throughput::Elements(1));
    group.bench_function("send (persist + post), bob watching", |b| {
        b.to_async(&rt)
            .iter(|| async { alice.send("bob", "rate").await.unwrap() })
    });
    group.finish();
    c.final_summary();
}
