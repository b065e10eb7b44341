//! How much of the log a compaction leaves (issue 13, docs/benchmarks.md).
//!
//! Alice's laptop escrows 10,000 messages to bob as the send path does (each a `Sent`
//! with its ratchet delta and transcript, then its `Delivered`), her phone folds them,
//! and the laptop compacts. Prints the records and bytes the relay stores for the log
//! before and after, and the phone's history. A relay in this process on a temporary
//! SQLite file.
//!
//! `cargo run --release -p chorus-client --example compaction [MESSAGES]`

use std::net::SocketAddr;

use chorus_client::{Device, Options, Unlock};
use chorus_relay::serve::ServeArgs;

/// Records and ciphertext bytes the relay stores for `d`'s log.
async fn stored(d: &Device) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let records = d.relay().read_all_records().await?;
    Ok((
        records.len(),
        records.iter().map(|r| r.ciphertext.0.len()).sum(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let messages: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 10_000,
    };
    let dir = tempfile::tempdir()?;
    let (listener, state) = ServeArgs::embedded(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        dir.path().join("relay"),
    )
    .bind()
    .await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(chorus_relay::run(listener, state, std::future::pending()));
    let init = |name: &'static str| {
        let (home, url) = (dir.path().join(name), url.clone());
        async move { Device::init(&home, Unlock::KeyFile, &url, name, Options::default()).await }
    };
    let laptop = init("alice").await?;
    let bob = init("bob").await?;
    let (phone, _, _) = chorus_client::link::link_locally(
        &laptop,
        &dir.path().join("phone"),
        "phone",
        Unlock::KeyFile,
        Options::default(),
    )
    .await?;
    bob.accept(&laptop.invite().await?, Some("alice")).await?;
    laptop.sync().await?;
    let text = "a message of about the length people write, give or take a word";
    laptop.bench_burst("bob", text, messages, 25, false).await?;
    phone.sync().await?;
    let (records, bytes) = stored(&laptop).await?;
    println!("{messages} messages: the log holds {records} records, {bytes} bytes of ciphertext");
    let first = laptop.compact_log().await?;
    let (records, bytes) = stored(&laptop).await?;
    println!(
        "after compaction (first seq {first}): {records} records, {bytes} bytes of ciphertext"
    );
    println!(
        "the phone's history still holds {} messages",
        phone
            .history("bob", u32::try_from(messages + 10)?)
            .await?
            .len()
    );
    Ok(())
}
