//! What the client benchmarks share: a real relay in this process, identities with
//! linked devices, and the process's CPU time.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use chorus_client::link::link_locally;
use chorus_client::{Device, Options, Unlock};

/// The allocator the `chorus` and `chorus-relay` binaries ship with, so the numbers
/// are the binaries' (ARCHITECTURE.md, "mimalloc in the binaries").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A relay in this process (axum, SQLite file under `dir`, rate limits off) on a
/// loopback port; its URL.
#[allow(
    clippy::expect_used,
    reason = "a benchmark set-up has nothing better to do"
)]
pub async fn relay(dir: &Path) -> String {
    chorus_relay::serve::spawn_loopback(dir.join("relay"))
        .await
        .expect("bind a loopback port")
}

/// An identity `name` with `devices` devices: the first made by `init`, the others
/// linked to it with `link_locally` (the code path of `chorus link`).
pub async fn identity(dir: &Path, url: &str, name: &str, devices: usize) -> Vec<Device> {
    let first = Device::init(
        &dir.join(format!("{name}0")),
        Unlock::KeyFile,
        url,
        name,
        Options::default(),
    )
    .await
    .unwrap();
    let mut all = vec![first];
    for i in 1..devices {
        let home = dir.join(format!("{name}{i}"));
        let (d, _, _) = link_locally(
            &all[0],
            &home,
            &format!("device {i}"),
            Unlock::KeyFile,
            Options::default(),
        )
        .await
        .unwrap();
        all.push(d);
    }
    all
}

/// This process's user + system CPU time, from `/proc/self/stat` (Linux).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    let ticks = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_secs_f64((fields[0] + fields[1]) as f64 / ticks as f64)
}
