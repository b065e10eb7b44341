//! Set-up for the crate's own tests (those that reach inside: forging records and
//! bundles a correct device never produces). A real relay on loopback, real stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use crate::{Device, Options, Unlock};

static SYSTEM: chorus_crypto::SystemEntropy = chorus_crypto::SystemEntropy;

/// The system's randomness, for tests that forge what a device would draw.
pub(crate) fn rng() -> chorus_crypto::EntropyRng<'static> {
    (&SYSTEM as &dyn chorus_crypto::Entropy).rng()
}

/// `N` bytes of the system's randomness.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    (&SYSTEM as &dyn chorus_crypto::Entropy).array()
}

/// A relay in this process (axum, SQLite file under `dir`, rate limits off) on a
/// loopback port; its URL.
pub(crate) async fn relay(dir: &Path) -> String {
    chorus_relay::serve::spawn_loopback(dir.join("relay"))
        .await
        .expect("bind a loopback port")
}

/// A sibling of `first`'s, linked now in `dir/name` (the code path of `chorus link`).
pub(crate) async fn sibling(first: &Device, dir: &Path, name: &str, options: Options) -> Device {
    crate::link::link_locally(first, &dir.join(name), name, Unlock::KeyFile, options)
        .await
        .unwrap()
        .0
}

/// Bob (a new identity in `dir/bob`) accepts an invitation from `alice` and they
/// exchange a message each: a conversation that runs both ways. Returns Bob.
pub(crate) async fn talking_to_bob(alice: &Device, dir: &Path, url: &str) -> Device {
    let bob = device(dir, url, "bob").await;
    bob.accept(&alice.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    alice.sync().await.unwrap();
    alice.send("bob", "hello").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["hello"]);
    bob.send("alice", "hi alice").await.unwrap();
    assert!(texts(&alice.sync().await.unwrap()).contains(&"hi alice".to_owned()));
    bob
}

/// The texts of the last `limit` messages with `contact` in `d`'s history, oldest first.
pub(crate) async fn history_texts(d: &Device, contact: &str, limit: u32) -> Vec<String> {
    d.history(contact, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// The texts of the messages among `events`.
pub(crate) fn texts(events: &[crate::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            crate::Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

/// A new identity `name` with one device in `dir/name`.
pub(crate) async fn device(dir: &Path, url: &str, name: &str) -> Device {
    Device::init(
        &dir.join(name),
        Unlock::KeyFile,
        url,
        name,
        Options::default(),
    )
    .await
    .unwrap()
}

/// What a refused record must leave alone: the profile, the roster, the registers,
/// the contacts and the streams (everything but the log cursor).
pub(crate) async fn folded_state(d: &Device) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for q in [
        "SELECT name FROM identity",
        "SELECT hex(entry) FROM roster ORDER BY idx",
        "SELECT name || hex(value) || lamport FROM registers ORDER BY name",
        "SELECT name FROM contacts ORDER BY name",
        "SELECT hex(tag) || version || coalesce(hex(head), '') FROM streams ORDER BY tag",
        "SELECT count(*) || '' FROM seen_events",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(q)
            .fetch_all(d.store.pool())
            .await
            .unwrap();
        out.push(rows.join(",").into_bytes());
    }
    out
}

/// A root-signed entry adding `device` to `d`'s roster, never appended to the log:
/// what the relay needs to register a device the roster does not name.
pub(crate) async fn root_authorization(
    d: &Device,
    device: chorus_crypto::DevicePublicKey,
) -> Vec<u8> {
    let mut conn = d.store.pool().acquire().await.unwrap();
    let roster = crate::store::log_state::load_roster(&mut conn, &d.log.keys.log_id)
        .await
        .unwrap();
    let dh = chorus_crypto::DeviceDhSecret::generate(&mut rng()).public_key();
    let held = d.me();
    let root = held.identity.root().unwrap();
    roster
        .authorize(
            &chorus_core::RosterSigner::Root(root),
            device,
            dh,
            "unnamed",
            0,
        )
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// A copy of a session through its persisted form (what another store would hold).
pub(crate) fn copy(session: &chorus_core::Session) -> chorus_core::Session {
    chorus_core::Session::restore(&session.snapshot(), session.generation()).unwrap()
}
