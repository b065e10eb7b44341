//! Property test over random delivery schedules: sends on both sides, delivery in any
//! order, loss, duplication and forks of the sender's state.
//!
//! Invariants after every step:
//! - the first delivery of a message decrypts to exactly what was sent — except a new
//!   ratchet key that builds on a key the receiving replica never had (a fork branch it
//!   dropped) or has deleted (older than its honor floor), which must fail with
//!   `UnknownParent` and change nothing;
//! - a message of a replica whose state was dropped (a fork not adopted: a device that
//!   died, or a revoked device's copy) may instead fail with `DuplicateOrExpired` once
//!   the sender's newer messages announced a floor above its chain: the peer closes
//!   the chains below and beside that floor, so a copy of old state cannot go on
//!   sending (`Tree::apply_peer_floor`, the heal after a revocation);
//! - every later delivery of the same message fails with `DuplicateOrExpired`;
//! - a failed delivery leaves the receiver's state byte-identical;
//! - both sides can always send again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeSet;

use chorus_core::{EncryptedMessage, Session, SessionError};
use chorus_crypto::RatchetPublic;
use common::{header, pair};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Debug, Clone)]
enum Action {
    AliceSends,
    BobSends,
    DeliverToBob(usize),
    DeliverToAlice(usize),
    /// A replica of Alice steps from the same node and sends; `adopt`: the replica
    /// carries on as Alice and the old state is dropped.
    Fork {
        sends: u8,
        adopt: bool,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::AliceSends),
        3 => Just(Action::BobSends),
        4 => any::<usize>().prop_map(Action::DeliverToBob),
        4 => any::<usize>().prop_map(Action::DeliverToAlice),
        1 => (1u8..3, any::<bool>()).prop_map(|(sends, adopt)| Action::Fork { sends, adopt }),
    ]
}

struct Sent {
    message: EncryptedMessage,
    text: String,
    delivered: bool,
    /// Sent by a replica whose state was then dropped (a fork not adopted).
    dropped_fork: bool,
}

struct World {
    alice: Session,
    bob: Session,
    alice_rng: StdRng,
    bob_rng: StdRng,
    fork_seed: u64,
    /// Ratchet keys the current Alice replica has sent on.
    alice_keys: BTreeSet<RatchetPublic>,
    to_bob: Vec<Sent>,
    to_alice: Vec<Sent>,
    counter: usize,
}

fn deliver(
    receiver: &mut Session,
    sent: &mut Sent,
    may_be_unknown_parent: bool,
) -> Result<(), TestCaseError> {
    let before = receiver.snapshot();
    match receiver.decrypt(&sent.message) {
        Ok(plain) => {
            prop_assert!(!sent.delivered, "a message decrypted twice");
            prop_assert_eq!(&plain[..], sent.text.as_bytes());
            sent.delivered = true;
        }
        Err(e) => {
            prop_assert_eq!(
                &*receiver.snapshot(),
                &*before,
                "a failed decrypt changed state: {:?}",
                e
            );
            if sent.delivered {
                prop_assert!(
                    matches!(e, SessionError::DuplicateOrExpired { .. }),
                    "duplicate gave {:?}",
                    e
                );
            } else {
                let closed =
                    sent.dropped_fork && matches!(e, SessionError::DuplicateOrExpired { .. });
                prop_assert!(
                    (may_be_unknown_parent && e == SessionError::UnknownParent) || closed,
                    "first delivery failed: {:?}",
                    e
                );
            }
        }
    }
    Ok(())
}

fn run(seed: u64, actions: Vec<Action>) -> Result<(), TestCaseError> {
    let p = pair(seed);
    // Independent streams per party (a shared stream would make two parties draw the
    // same ratchet keys).
    let mut seeds = StdRng::seed_from_u64(seed);
    let mut w = World {
        alice: p.alice,
        bob: p.bob,
        alice_rng: StdRng::seed_from_u64(rand::Rng::next_u64(&mut seeds)),
        bob_rng: StdRng::seed_from_u64(rand::Rng::next_u64(&mut seeds)),
        fork_seed: rand::Rng::next_u64(&mut seeds),
        alice_keys: BTreeSet::new(),
        to_bob: Vec::new(),
        to_alice: Vec::new(),
        counter: 0,
    };
    for a in actions {
        w.counter += 1;
        match a {
            Action::AliceSends => {
                let text = format!("a{}", w.counter);
                let message = w
                    .alice
                    .encrypt(text.as_bytes(), &mut w.alice_rng)
                    .map_err(fail)?;
                w.alice_keys.insert(header(&message).sender);
                w.to_bob.push(Sent {
                    message,
                    text,
                    delivered: false,
                    dropped_fork: false,
                });
            }
            Action::BobSends => {
                let text = format!("b{}", w.counter);
                let message = w
                    .bob
                    .encrypt(text.as_bytes(), &mut w.bob_rng)
                    .map_err(fail)?;
                w.to_alice.push(Sent {
                    message,
                    text,
                    delivered: false,
                    dropped_fork: false,
                });
            }
            Action::DeliverToBob(i) if !w.to_bob.is_empty() => {
                let n = w.to_bob.len();
                let sent = &mut w.to_bob[i % n];
                let deleted = header(&sent.message)
                    .parent
                    .is_some_and(|k| !w.bob.accepts_replies_on(&k));
                deliver(&mut w.bob, sent, deleted)?;
            }
            Action::DeliverToAlice(i) if !w.to_alice.is_empty() => {
                let n = w.to_alice.len();
                let sent = &mut w.to_alice[i % n];
                let parent = header(&sent.message).parent;
                let foreign = parent
                    .is_some_and(|k| !w.alice_keys.contains(&k) || !w.alice.accepts_replies_on(&k));
                deliver(&mut w.alice, sent, foreign)?;
            }
            Action::DeliverToBob(_) | Action::DeliverToAlice(_) => {}
            Action::Fork { sends, adopt } => {
                w.fork_seed = w.fork_seed.wrapping_add(1);
                let mut rng = StdRng::seed_from_u64(w.fork_seed);
                let mut replica = Session::restore_stale(&w.alice.snapshot(), w.alice.generation())
                    .map_err(fail)?;
                let mut replica_keys = w.alice_keys.clone();
                for s in 0..sends {
                    let text = format!("f{}-{s}", w.counter);
                    let message = replica.encrypt(text.as_bytes(), &mut rng).map_err(fail)?;
                    replica_keys.insert(header(&message).sender);
                    w.to_bob.push(Sent {
                        message,
                        text,
                        delivered: false,
                        dropped_fork: !adopt,
                    });
                }
                if adopt {
                    w.alice = replica;
                    w.alice_rng = rng;
                    w.alice_keys = replica_keys;
                }
            }
        }
    }
    // Both sides can still send, and the other side reads it (the final Bob message may
    // build on a fork branch Alice dropped; then it must be refused cleanly instead).
    let m = w.alice.encrypt(b"final", &mut w.alice_rng).map_err(fail)?;
    let mut last = Sent {
        message: m,
        text: "final".into(),
        delivered: false,
        dropped_fork: false,
    };
    deliver(&mut w.bob, &mut last, false)?;
    let m = w.bob.encrypt(b"final", &mut w.bob_rng).map_err(fail)?;
    let foreign = header(&m)
        .parent
        .is_some_and(|k| !w.alice_keys.contains(&k));
    let mut last = Sent {
        message: m,
        text: "final".into(),
        delivered: false,
        dropped_fork: false,
    };
    deliver(&mut w.alice, &mut last, foreign)?;
    Ok(())
}

fn fail(e: SessionError) -> TestCaseError {
    TestCaseError::fail(format!("unexpected error: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_delivered_message_decrypts_exactly_once(seed in any::<u64>(), actions in prop::collection::vec(action(), 1..60)) {
        run(seed, actions)?;
    }
}
