//! The clone attack (Cremers, Jacomme, Naska, USENIX Security 2023) on a revoked device.
//!
//! A revoked device keeps its whole store: every ratchet key of every contact session as
//! it was at the revocation. It is a perfect clone of the identity's sessions. The heal
//! after a revocation must leave it with nothing: the next send takes a fresh DH step,
//! the contact's answer builds on a key the clone never held, and once the identity's
//! devices announce that they build only on that answer (`peer_floor`), the contact
//! refuses every new key built on anything the clone knew, and every message on a
//! chain the clone could continue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

mod common;

use chorus_core::{EncryptedMessage, Session, SessionError};
use chorus_crypto::RatchetPublic;
use common::*;

/// Alice and Bob after `rounds` round trips, Alice having sent last (her chain is
/// open), with every ratchet key of Bob's that Alice's session saw.
fn talked(seed: u64, rounds: usize) -> (Pair, Vec<RatchetPublic>) {
    let mut p = pair(seed);
    let mut bobs = Vec::new();
    for i in 0..rounds {
        let m = send(&mut p.bob, &mut p.rng, &format!("b{i}"));
        bobs.push(header(&m).sender);
        text(&mut p.alice, &m);
        let m = send(&mut p.alice, &mut p.rng, &format!("a{i}"));
        text(&mut p.bob, &m);
    }
    (p, bobs)
}

/// The three ways the clone can try to talk as Alice: continue the chain it holds
/// open, fork a fresh key from Bob's newest key it knows (what a restored stale copy
/// does), and both again after a few messages.
fn clone_attempts(clone: &Session, rng: &mut rand::rngs::StdRng) -> Vec<EncryptedMessage> {
    let mut open = copy(clone);
    let mut forked = Session::restore_stale(&clone.snapshot(), clone.generation()).unwrap();
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(send(&mut open, rng, &format!("clone open {i}")));
        out.push(send(&mut forked, rng, &format!("clone fork {i}")));
    }
    out
}

#[test]
fn after_the_heal_the_contact_refuses_everything_the_revoked_clone_sends() {
    let (mut p, bobs_known) = talked(41, 3);
    // The tablet is revoked: it keeps Alice's session exactly as it is now.
    let clone = copy(&p.alice);
    assert!(p.alice.begin_heal(1), "a first revocation starts a heal");
    assert!(
        !p.alice.begin_heal(1),
        "the same revocation twice is one heal"
    );

    // One round trip, and one more message that tells Bob where Alice now builds.
    let m1 = send(&mut p.alice, &mut p.rng, "after the revocation");
    assert_eq!(text(&mut p.bob, &m1), "after the revocation");
    assert!(
        !clone.accepts_replies_on(&header(&m1).sender),
        "the first send after the revocation steps to a key the clone never held"
    );
    let b1 = send(&mut p.bob, &mut p.rng, "answer");
    assert_eq!(text(&mut p.alice, &b1), "answer");
    let m2 = send(&mut p.alice, &mut p.rng, "healed");
    assert_eq!(
        header(&m2).peer_floor,
        Some(header(&b1).sender),
        "Alice announces that she builds only on Bob's answer"
    );
    assert_eq!(text(&mut p.bob, &m2), "healed");

    // Bob no longer holds a key the clone could build on.
    for k in &bobs_known {
        assert!(
            !p.bob.accepts_replies_on(k),
            "Bob still honours a key the clone knew"
        );
    }
    // Nothing the clone sends gets through, and each refusal changes nothing.
    for m in clone_attempts(&clone, &mut p.rng) {
        let before = p.bob.state_digest();
        let r = p.bob.decrypt(&m);
        assert!(r.is_err(), "Bob accepted a message from the revoked clone");
        assert_eq!(p.bob.state_digest(), before);
    }
    // The conversation goes on.
    let m3 = send(&mut p.alice, &mut p.rng, "still here");
    assert_eq!(text(&mut p.bob, &m3), "still here");
    let b2 = send(&mut p.bob, &mut p.rng, "me too");
    assert_eq!(text(&mut p.alice, &b2), "me too");
}

#[test]
fn after_one_round_trip_the_clone_reads_nothing_bob_sends() {
    for bob_first in [false, true] {
        let (mut p, _) = talked(42, 2);
        let mut clone = copy(&p.alice);
        p.alice.begin_heal(1);
        if bob_first {
            // Bob sent before he saw the heal: that message is the clone's to read (it
            // builds on a key of Alice's the clone holds), which is why healing takes
            // one round trip.
            let early = send(&mut p.bob, &mut p.rng, "early");
            assert_eq!(text(&mut clone, &early), "early");
            assert_eq!(text(&mut p.alice, &early), "early");
        }
        // Alice sent last: without the forced step she would go on on the chain the
        // clone holds open, and Bob's replies would build on a key the clone holds.
        let m1 = send(&mut p.alice, &mut p.rng, "fresh");
        assert_eq!(text(&mut p.bob, &m1), "fresh");
        for i in 0..3 {
            let m = send(&mut p.bob, &mut p.rng, &format!("late {i}"));
            assert_eq!(
                clone.decrypt(&m).err(),
                Some(SessionError::UnknownParent),
                "the clone read Bob's reply {i} (Bob spoke first: {bob_first})"
            );
            assert_eq!(text(&mut p.alice, &m), format!("late {i}"));
        }
    }
}

#[test]
fn without_a_revocation_the_floor_bob_is_told_changes_nothing_he_accepts() {
    // The floor is in every header (one device or five, revoked or not, look alike);
    // outside a heal it names the oldest of Bob's keys Alice still holds a root for, so
    // a replica of Alice that lags one step is still accepted.
    let (mut p, _) = talked(43, 2);
    let lagging = copy(&p.alice);
    let b = send(&mut p.bob, &mut p.rng, "b");
    text(&mut p.alice, &b);
    let m = send(&mut p.alice, &mut p.rng, "a");
    assert!(header(&m).peer_floor.is_some());
    text(&mut p.bob, &m);
    let mut lagging = Session::restore_stale(&lagging.snapshot(), lagging.generation()).unwrap();
    let late = send(&mut lagging, &mut p.rng, "from a replica one step behind");
    assert_eq!(text(&mut p.bob, &late), "from a replica one step behind");
}

#[test]
fn a_clone_sending_through_the_heal_neither_locks_the_identity_out_nor_is_read_after_the_anchor() {
    // Found by the simulator (a device stolen mid-conversation, its clone sending every
    // few seconds): before Alice's devices know of the theft, the clone forks from
    // Bob's newest key and Bob, who cannot tell it from a sibling of Alice's, builds
    // his answer on the clone's branch. That answer is the clone's to read (the theft
    // is not known yet). But once Alice's first healing message arrives, Bob must stop
    // building on the clone's branch — or every answer of his stays the clone's and
    // Alice reads none — and must refuse what the clone sends from then on.
    let (mut p, _) = talked(44, 3);
    let clone = copy(&p.alice);
    let mut forked = Session::restore_stale(&clone.snapshot(), clone.generation()).unwrap();
    for i in 0..3 {
        let m = send(&mut forked, &mut p.rng, &format!("clone {i}"));
        assert_eq!(
            text(&mut p.bob, &m),
            format!("clone {i}"),
            "before the heal"
        );
    }
    let early = send(&mut p.bob, &mut p.rng, "built on the clone's branch");
    assert_eq!(
        text(&mut forked, &early),
        "built on the clone's branch",
        "the clone reads what Bob sends before he knows of the heal"
    );

    assert!(p.alice.begin_heal(1));
    let a1 = send(&mut p.alice, &mut p.rng, "anchor");
    assert_eq!(text(&mut p.bob, &a1), "anchor");

    // The clone, which read Bob's answer, tries again: on its chain, and forking from
    // Bob's newest key it knows and from the one before.
    let mut attempts = Vec::new();
    attempts.push(send(&mut forked, &mut p.rng, "clone on its chain"));
    let mut again = Session::restore_stale(&forked.snapshot(), forked.generation()).unwrap();
    attempts.push(send(
        &mut again,
        &mut p.rng,
        "clone forks from Bob's answer",
    ));
    attempts.extend(clone_attempts(&clone, &mut p.rng));
    for m in &attempts {
        let before = p.bob.state_digest();
        assert!(
            p.bob.decrypt(m).is_err(),
            "Bob accepted the clone after Alice's healing message"
        );
        assert_eq!(
            p.bob.state_digest(),
            before,
            "a refusal changed Bob's state"
        );
    }

    // Bob's next answer is Alice's, not the clone's.
    let b1 = send(&mut p.bob, &mut p.rng, "answer");
    assert_eq!(text(&mut p.alice, &b1), "answer", "Alice is locked out");
    assert!(forked.decrypt(&b1).is_err(), "the clone read Bob's answer");
    assert!(again.decrypt(&b1).is_err(), "the clone read Bob's answer");
    let a2 = send(&mut p.alice, &mut p.rng, "healed");
    assert_eq!(text(&mut p.bob, &a2), "healed");
    for m in clone_attempts(&forked, &mut p.rng) {
        assert!(
            p.bob.decrypt(&m).is_err(),
            "Bob accepted the clone after the heal"
        );
    }
}

#[test]
fn a_send_planned_before_the_revocation_and_logged_after_it_is_no_anchor() {
    // Found by the simulator under `leaderless`: a sibling planned a send before it
    // folded the revocation, and the log took it after. Folded after the revocation,
    // its step became the heal's anchor — but its message never announced itself as
    // Alice's floor, so Bob never cut to it, and the clone went on forking from Bob's
    // key after the heal.
    let (mut p, _) = talked(45, 2);
    let clone = copy(&p.alice);
    let mut sibling = Session::restore_stale(&p.alice.snapshot(), p.alice.generation()).unwrap();
    let (early, delta) = sibling
        .encrypt_escrowed(b"planned before", &mut p.rng)
        .unwrap();
    assert!(p.alice.apply_send_delta_after(delta.as_bytes(), 1).unwrap());
    assert!(
        p.alice.heal_due(1),
        "a send that did not heal is no anchor: the heal still waits for one"
    );
    assert_eq!(text(&mut p.bob, &early), "planned before");

    let a1 = send(&mut p.alice, &mut p.rng, "anchor");
    assert_eq!(header(&a1).honor_floor, Some(header(&a1).sender));
    assert_eq!(text(&mut p.bob, &a1), "anchor");
    let b1 = send(&mut p.bob, &mut p.rng, "answer");
    assert_eq!(text(&mut p.alice, &b1), "answer");
    let a2 = send(&mut p.alice, &mut p.rng, "healed");
    assert_eq!(text(&mut p.bob, &a2), "healed");
    for m in clone_attempts(&clone, &mut p.rng) {
        assert!(
            p.bob.decrypt(&m).is_err(),
            "Bob accepted the clone after the heal"
        );
    }
}
