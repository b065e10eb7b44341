//! History for a new device (issue 13 item 6), on a real relay: the approver's whole
//! history arrives in sealed chunks, in the order every device shows it; `--no-history`
//! brings none; chunks left over from an interrupted link are imported by the next
//! sync, and a chunk that is gone is skipped without blocking the rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::link::{CatchUp, LINK_TIMEOUT, LinkOffer, Stage};
use crate::testing::{device, relay};
use crate::{Device, Options, Unlock};

/// Chunks this small cut a dozen messages into several.
fn small_chunks() -> Options {
    Options {
        history_chunk_bytes: 300,
        ..Options::default()
    }
}

/// Alice (whose archives come in small chunks) and Bob, after twelve messages.
async fn alice_and_bob_after_a_conversation(dir: &std::path::Path) -> (Device, Device) {
    let url = relay(dir).await;
    let alice = Device::init(
        &dir.join("alice"),
        Unlock::KeyFile,
        &url,
        "alice",
        small_chunks(),
    )
    .await
    .unwrap();
    let bob = device(dir, &url, "bob").await;
    bob.accept(&alice.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    alice.sync().await.unwrap();
    for i in 0..6 {
        alice.send("bob", &format!("alice {i}")).await.unwrap();
        bob.sync().await.unwrap();
        bob.send("alice", &format!("bob {i}")).await.unwrap();
        alice.sync().await.unwrap();
    }
    (alice, bob)
}

/// Links a tablet into `existing`'s identity (with or without history); returns it and
/// the progress it reported.
async fn link(existing: &Device, home: &std::path::Path, history: bool) -> (Device, Vec<CatchUp>) {
    let mut offer = LinkOffer::new(
        home,
        Unlock::KeyFile,
        &existing.relay_url(),
        "tablet",
        &Options::default(),
    )
    .await
    .unwrap();
    if !history {
        offer = offer.without_history();
    }
    let code = offer.code();
    let waiting = tokio::spawn(offer.wait_for_approver(LINK_TIMEOUT));
    let approval = existing.approve_link(&code).await.unwrap();
    let confirmed = waiting.await.unwrap().unwrap().confirm().await.unwrap();
    approval.confirm().await.unwrap();
    let mut seen = Vec::new();
    let device = confirmed
        .finish(Options::default(), LINK_TIMEOUT, |p| seen.push(p))
        .await
        .unwrap();
    (device, seen)
}

/// The conversation as shown: direction, text, sender's clock.
async fn shown(d: &Device, contact: &str) -> Vec<(bool, String, i64)> {
    d.history(contact, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.outgoing, m.text, m.sent_ms))
        .collect()
}

#[tokio::test]
async fn a_new_device_gets_the_whole_history_in_the_order_its_siblings_show() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = alice_and_bob_after_a_conversation(dir.path()).await;
    let (tablet, progress) = link(&alice, &dir.path().join("tablet"), true).await;
    let chunks = progress
        .iter()
        .filter(|p| p.stage == Stage::History)
        .map(|p| p.total)
        .max()
        .unwrap();
    assert!(
        chunks > 1,
        "twelve messages in 300-byte chunks: {progress:?}"
    );
    assert!(
        progress
            .iter()
            .any(|p| p.stage == Stage::History && p.done == chunks)
    );
    let before = shown(&alice, "bob").await;
    assert_eq!(before.len(), 12);
    assert_eq!(shown(&tablet, "bob").await, before);
    // Nothing is left to import, and the conversation goes on from the tablet.
    assert_eq!(tablet.store.history_import_left().await.unwrap(), 0);
    tablet.send("bob", "from the tablet").await.unwrap();
    bob.sync().await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(shown(&tablet, "bob").await, shown(&alice, "bob").await);
}

#[tokio::test]
async fn with_no_history_the_new_device_starts_at_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _bob) = alice_and_bob_after_a_conversation(dir.path()).await;
    let (tablet, progress) = link(&alice, &dir.path().join("tablet"), false).await;
    assert!(progress.iter().all(|p| p.stage == Stage::Log));
    assert!(shown(&tablet, "bob").await.is_empty());
    assert_eq!(tablet.store.history_import_left().await.unwrap(), 0);
}

#[tokio::test]
async fn an_interrupted_import_resumes_on_the_next_sync_and_a_lost_chunk_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, _bob) = alice_and_bob_after_a_conversation(dir.path()).await;
    let (tablet, _) = link(&alice, &dir.path().join("tablet"), false).await;
    // What a link leaves behind when it stops after noting its archive: the chunks to
    // import. One of them has been lost at the relay meanwhile.
    let (key, ids) = alice.export_history().await.unwrap();
    assert!(ids.len() > 2);
    tablet.store.put_history_import(&key, &ids).await.unwrap();
    alice
        .relay
        .delete_blob(chorus_relay_api::Id32(ids[1]))
        .await
        .unwrap();
    tablet.sync().await.unwrap();
    assert_eq!(tablet.store.history_import_left().await.unwrap(), 0);
    let got = shown(&tablet, "bob").await;
    let all = shown(&alice, "bob").await;
    assert!(got.len() < all.len() && !got.is_empty(), "{got:?}");
    assert!(
        got.iter().all(|m| all.contains(m)),
        "only what alice has, in her order"
    );
    // The imported chunks are gone from the relay.
    for id in [ids[0], ids[2]] {
        let e = alice
            .relay
            .get_blob(chorus_relay_api::Id32(id))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("not_found"));
    }
}
