//! Snapshots of the `Debug` output of every type that holds secrets: a change that
//! would print key material (or plaintext) shows up as a snapshot diff in review.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

mod common;

use chorus_core::{LocalIdentity, MemoryPrekeyStore, respond};
use common::{bundle, established};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn debug_output_of_secret_holders_shows_only_public_facts() {
    let mut rng = StdRng::seed_from_u64(42);
    let identity = LocalIdentity::generate(&mut rng);
    insta::assert_snapshot!("local_identity", format!("{identity:?}"));

    let mut store = MemoryPrekeyStore::default();
    let b = bundle(&identity, &mut store, &mut rng, true);
    insta::assert_snapshot!("prekey_store", format!("{store:?}"));

    let alice = LocalIdentity::generate(&mut rng);
    let mut session = chorus_core::initiate(&alice, &b, &mut rng).unwrap();
    let first = session
        .encrypt(b"the plaintext must not appear", &mut rng)
        .unwrap();
    insta::assert_snapshot!("session_initiator", format!("{session:?}"));
    let responded = respond(&identity, &store, &first.bytes).unwrap();
    let shown = format!("{responded:?}");
    assert!(!shown.contains("plaintext must not"), "{shown}");
    insta::assert_snapshot!("responded", shown);

    let p = established(43, 2);
    insta::assert_snapshot!("session_established", format!("{:?}", p.bob));

    // What the fold hands the client to persist carries plaintext: only its kind shows.
    let effect = chorus_core::Effect::Message(chorus_core::HistoryEntry {
        file: None,
        alias: "bob".into(),
        outgoing: true,
        envelope_id: [1; 16],
        text: "the plaintext must not appear".into(),
        sent_ms: 1,
        stored_ms: 1,
        position: 1,
        read: true,
        author: [0; 32],
    });
    assert_eq!(format!("{effect:?}"), "Message");

    // An event to append carries plaintext (a forwarded message) or session state (a
    // send's delta): only its guard shows, as does a role holding one.
    let forward = chorus_core::Pending::guarded(
        chorus_wire::EventKind::ForwardRequested {
            contact: [2; 32],
            message: chorus_wire::FirstMessage {
                file: None,
                envelope_id: [3; 16],
                sent_ms: 1,
                text: "the plaintext must not appear".into(),
            },
        },
        b"leader-lease".to_vec(),
        Some(4),
    );
    assert_eq!(
        format!("{forward:?}"),
        r#"Pending { guard: Some(("leader-lease", Some(4))), .. }"#
    );
    let role = chorus_core::Role::TakeLease(Box::new(forward));
    assert!(!format!("{role:?}").contains("plaintext"), "{role:?}");
}
