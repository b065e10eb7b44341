#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Files on loopback: a real relay (axum, SQLite file) in this process and two real
//! devices.
//!
//! * **send**: `Device::send_file` of an 8 MiB file — read, hash, encrypt (STREAM over
//!   AES-256-GCM, 32 parts of 256 KiB), upload each part, then send the message.
//! * **save**: `Device::save_file` of it on the contact's device — fetch each part,
//!   open it, hash, write to a temporary file, fsync, move into place.
//! * **floor**: the cryptography alone on the same bytes — SHA-256 and sealing every
//!   part, then opening every part — so the rest is the relay, the network and the disk.
//!
//! `cargo bench -p chorus-client --bench files`.

mod common;

use std::path::Path;

use chorus_client::Device;
use chorus_crypto::{FileDigest, FileKey};
use chorus_wire::limits::FILE_PART_LEN;
use criterion::{Criterion, Throughput};

const FILE_BYTES: usize = 8 * 1024 * 1024;

async fn setup(dir: &Path) -> (Device, Device) {
    // The relay's file quota off: criterion sends the file a few hundred times.
    let mut args = chorus_relay::serve::ServeArgs::embedded(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        dir.join("relay"),
    );
    args.no_rate_limits = true;
    args.file_quota_bytes = u64::MAX / 2;
    let (listener, state) = args.bind().await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(chorus_relay::run(listener, state, std::future::pending()));
    let alice = common::identity(dir, &url, "alice", 1).await.remove(0);
    let bob = common::identity(dir, &url, "bob", 1).await.remove(0);
    let code = alice.invite().await.unwrap();
    bob.accept(&code, None).await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    (alice, bob)
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = rt.block_on(setup(dir.path()));
    let bytes: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 31 + i / 4096) as u8).collect();
    let path = dir.path().join("file.bin");
    std::fs::write(&path, &bytes).unwrap();
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(20));
    let mut g = c.benchmark_group("file_8MiB");
    g.throughput(Throughput::Bytes(FILE_BYTES as u64));
    g.bench_function("send", |b| {
        b.to_async(&rt).iter(|| async {
            alice
                .send_file("bob", &path, "", &mut |_, _| {})
                .await
                .unwrap()
        })
    });
    rt.block_on(bob.sync()).unwrap();
    let id = rt.block_on(bob.files()).unwrap()[0].file.id.clone();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut n = 0u64;
    g.bench_function("save", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let dest = out.join(n.to_string());
            let (bob, id) = (&bob, &id);
            async move { bob.save_file(id, &dest, &mut |_, _| {}).await.unwrap() }
        })
    });
    g.bench_function("floor_seal_and_open", |b| {
        let key = FileKey::generate(&mut rand::rng());
        let locator = [7u8; 32];
        b.iter(|| {
            let mut digest = FileDigest::new();
            let parts = bytes.chunks(FILE_PART_LEN).count();
            let mut sealed = Vec::with_capacity(parts);
            for (i, part) in bytes.chunks(FILE_PART_LEN).enumerate() {
                digest.update(part);
                let mut buf = part.to_vec();
                key.seal_part(&locator, i as u32, i + 1 == parts, &mut buf)
                    .unwrap();
                sealed.push(buf);
            }
            for (i, mut buf) in sealed.into_iter().enumerate() {
                key.open_part(&locator, i as u32, i + 1 == parts, &mut buf)
                    .unwrap();
            }
            digest.finish()
        })
    });
    g.finish();
    c.final_summary();
}
