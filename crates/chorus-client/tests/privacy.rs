#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Contacts never learn the device set (DESIGN principle 6), tested.
//!
//! The same conversation script runs twice: Alice with one device, then Alice with five
//! (four linked before the contact exists, one linked mid-conversation, one revoked at
//! the end), including concurrent sends. Bob and his relay are separate from Alice's home relay. Everything
//! Bob's relay stores — every envelope in every one of Bob's mailboxes — is recorded:
//! the count, each envelope's padded size and the shape of its header (up to the
//! counters: the revocation's forced DH step restarts one chain, as a reply would) must
//! be the same in both runs, and no device key of Alice's appears anywhere in it.

use chorus_client::{Device, Unlock};
use chorus_relay_api::Id32;
use chorus_wire::{Envelope, InitialMessage, RatchetMessage};

mod common;
use common::{Relay, TestClock, link, options};

/// What an observer learns from one envelope without keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    kind: &'static str,
    /// The padded ciphertext: what the message says, up to its bucket.
    ciphertext_bytes: usize,
    /// The header's size with its two counters set to one value: which fields it has
    /// and how big they are, without the ratchet's schedule.
    header_bytes: usize,
    names_parent: bool,
    announces_floor: bool,
    names_peer_floor: bool,
    one_time_prekey: bool,
}

/// What a contact (and its relay) sees of one envelope, up to the ratchet's schedule:
/// which messages start a new DH step, and so where the counters restart, is the
/// conversation's (a revocation adds one forced step toward each contact, as any reply
/// of theirs does), not the number of devices.
fn shape(payload: &[u8]) -> Shape {
    let (kind, message, one_time) = match Envelope::decode(payload).unwrap() {
        Envelope::Initial(b) => {
            let i = InitialMessage::decode(&b).unwrap();
            ("initial", i.message, i.one_time_prekey_id.is_some())
        }
        Envelope::Ratchet(b) => ("ratchet", RatchetMessage::decode(&b).unwrap(), false),
        Envelope::Copy { .. } => panic!("a per-device copy where the identity runs sequenced"),
    };
    let mut normalized = message.header.clone();
    normalized.counter = 1;
    normalized.previous_chain_length = 1;
    Shape {
        kind,
        ciphertext_bytes: message.ciphertext.len(),
        header_bytes: normalized.encode().len(),
        names_parent: message.header.parent.is_some(),
        announces_floor: message.header.honor_floor.is_some(),
        names_peer_floor: message.header.peer_floor.is_some(),
        one_time_prekey: one_time,
    }
}

/// Runs the script with `n` devices for Alice; returns every envelope Bob's relay holds
/// and the ids of Alice's devices.
async fn run(n: usize) -> (Vec<Vec<u8>>, Vec<String>) {
    let alice_relay = Relay::start().await;
    let bob_relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let opts = || options(&clock);
    let first = Device::init(
        &dir.path().join("a0"),
        Unlock::KeyFile,
        &alice_relay.url,
        "alice",
        opts(),
    )
    .await
    .unwrap();
    let mut alice = vec![first];
    // n - 1 devices before the contact exists, one more mid-conversation.
    for i in 1..n.saturating_sub(1).max(1) {
        let d = link(&alice[0], dir.path(), &format!("a{i}"), &clock).await;
        alice.push(d);
    }
    let bob = Device::init(
        &dir.path().join("bob"),
        Unlock::KeyFile,
        &bob_relay.url,
        "bob",
        opts(),
    )
    .await
    .unwrap();

    let code = bob.invite().await.unwrap();
    alice[0].accept(&code, Some("bob")).await.unwrap();
    bob.sync().await.unwrap();
    bob.send("alice", "hi alice").await.unwrap();
    for a in &alice {
        a.sync().await.unwrap();
    }
    // Round robin over the devices (one device sends them all when n = 1).
    for i in 0..8 {
        clock.tick();
        alice[i % alice.len()]
            .send("bob", &format!("message {i:02}"))
            .await
            .unwrap();
    }
    bob.sync().await.unwrap();
    bob.send("alice", "a reply").await.unwrap();
    for a in &alice {
        a.sync().await.unwrap();
    }
    // Concurrent sends: one per slot, on slot % devices.
    let sends = (0..5).map(|slot| {
        let d = &alice[slot % alice.len()];
        async move { d.send("bob", &format!("together {slot}")).await.unwrap() }
    });
    futures::future::join_all(sends).await;
    // A device linked mid-conversation sends at once (the only device, when n = 1).
    if n > 1 {
        let late = link(&alice[0], dir.path(), "late", &clock).await;
        late.send("bob", "from a new device").await.unwrap();
        alice.push(late);
    } else {
        alice[0].send("bob", "from a new device").await.unwrap();
    }
    bob.sync().await.unwrap();
    assert_eq!(bob.contacts().await.unwrap().len(), 1);
    assert_eq!(
        bob.history("alice", 100).await.unwrap().len(),
        8 + 5 + 1 + 2
    );
    assert_eq!(alice.len(), n);

    let ids = alice[0]
        .devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    // A revocation — with the key rotation, the new prekeys and the forced DH step
    // that follow it — looks to the contact's relay like a one-device identity moving
    // its mailbox: the next message carries the hello naming the new one.
    if n > 1 {
        alice[0].revoke_device("a1").await.unwrap();
        alice.remove(1);
    } else {
        alice[0].replace_mailboxes().await.unwrap();
    }
    clock.tick();
    alice[alice.len() - 1]
        .send("bob", "after a revocation")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    clock.tick();
    bob.send("alice", "an answer after it").await.unwrap();
    for a in &alice {
        a.sync().await.unwrap();
        assert_eq!(
            a.history("bob", 100).await.unwrap().last().unwrap().text,
            "an answer after it"
        );
    }
    assert_eq!(
        bob.history("alice", 100).await.unwrap().len(),
        8 + 5 + 1 + 2 + 2
    );
    // Everything Bob's relay stores for Bob.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        bob.home().join(chorus_client::STORE_FILE).display()
    ))
    .await
    .unwrap();
    let mailboxes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT mailbox_id FROM mailboxes")
        .fetch_all(&pool)
        .await
        .unwrap();
    let cursors: Vec<(Id32, i64)> = mailboxes
        .iter()
        .map(|m| (Id32(m.as_slice().try_into().unwrap()), 0))
        .collect();
    let pages = bob.relay().read_mailboxes(&cursors, 256).await.unwrap();
    let envelopes = pages
        .results
        .into_iter()
        .flat_map(|p| p.envelopes.into_iter().map(|e| e.payload.0))
        .collect();
    (envelopes, ids)
}

#[tokio::test]
async fn a_contact_sees_the_same_with_one_device_or_five() {
    let (one, _) = run(1).await;
    let (five, ids) = run(5).await;
    assert_eq!(one.len(), five.len(), "envelope counts");
    let mut s1: Vec<Shape> = one.iter().map(|e| shape(e)).collect();
    let mut s5: Vec<Shape> = five.iter().map(|e| shape(e)).collect();
    s1.sort();
    s5.sort();
    assert_eq!(s1, s5, "sizes and header shapes");
    // No device key of Alice's (the relay knows her devices by these) is in anything
    // Bob's relay stores or Bob receives.
    assert_eq!(ids.len(), 5);
    for id in &ids {
        let needle = hex::decode(id).unwrap();
        for e in &five {
            assert!(
                !e.windows(needle.len()).any(|w| w == needle),
                "device {id} appears in an envelope"
            );
        }
    }
}
