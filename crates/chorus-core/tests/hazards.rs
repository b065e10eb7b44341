//! Scenario tests, one per hazard a messaging session meets in the wild.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

mod common;

use chorus_core::{
    MAX_FIRST_MESSAGE_COUNTER, MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS, MAX_TREE_NODES, MessageKind,
    Session, SessionError, initiate, respond,
};
use common::*;

#[test]
fn out_of_order_delivery_within_a_chain() {
    let mut p = established(1, 1);
    let msgs: Vec<_> = (0..10)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("m{i}")))
        .collect();
    for i in [9, 3, 0, 5, 1, 8, 2, 7, 4, 6] {
        assert_eq!(text(&mut p.bob, &msgs[i]), format!("m{i}"));
    }
    assert_eq!(p.bob.skipped_keys(), 0, "every skipped key was used");
}

#[test]
fn out_of_order_across_a_dh_step() {
    let mut p = established(2, 1);
    let old: Vec<_> = (0..3)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("old{i}")))
        .collect();
    p.bob.decrypt(&old[0]).unwrap();
    let reply = send(&mut p.bob, &mut p.rng, "reply");
    assert_eq!(text(&mut p.alice, &reply), "reply");
    let new = send(&mut p.alice, &mut p.rng, "new");
    // Bob sees the new chain before the rest of the old one.
    assert_eq!(text(&mut p.bob, &new), "new");
    assert_eq!(text(&mut p.bob, &old[2]), "old2");
    assert_eq!(text(&mut p.bob, &old[1]), "old1");
}

#[test]
fn lost_messages_do_not_block_later_ones() {
    let mut p = established(3, 2);
    for round in 0..5 {
        let batch: Vec<_> = (0..4)
            .map(|i| send(&mut p.alice, &mut p.rng, &format!("{round}-{i}")))
            .collect();
        // Only the last message of each batch arrives.
        assert_eq!(text(&mut p.bob, &batch[3]), format!("{round}-3"));
        let r = send(&mut p.bob, &mut p.rng, "ack");
        assert_eq!(text(&mut p.alice, &r), "ack");
    }
}

#[test]
fn a_duplicate_is_rejected_with_a_typed_error_and_changes_nothing() {
    let mut p = established(4, 1);
    let m = send(&mut p.alice, &mut p.rng, "once");
    assert_eq!(text(&mut p.bob, &m), "once");
    let before = p.bob.snapshot();
    let err = p.bob.decrypt(&m).unwrap_err();
    assert!(
        matches!(err, SessionError::DuplicateOrExpired { .. }),
        "{err:?}"
    );
    assert_eq!(
        *p.bob.snapshot(),
        *before,
        "a rejected duplicate must not change state"
    );
    // And the session still works.
    let m2 = send(&mut p.alice, &mut p.rng, "twice");
    assert_eq!(text(&mut p.bob, &m2), "twice");
}

#[test]
fn a_tampered_message_is_rejected_and_the_session_survives() {
    let mut p = established(5, 1);
    let m = send(&mut p.alice, &mut p.rng, "intact");
    let before = p.bob.snapshot();
    for pos in [m.bytes.len() - 1, m.bytes.len() / 2, 10] {
        let mut bad = m.clone();
        bad.bytes[pos] ^= 0x01;
        assert!(p.bob.decrypt(&bad).is_err());
        assert_eq!(
            *p.bob.snapshot(),
            *before,
            "byte {pos}: a rejected message must not change state"
        );
    }
    assert_eq!(text(&mut p.bob, &m), "intact");
}

#[test]
fn a_long_gap_up_to_the_forward_jump_limit_decrypts() {
    let mut p = established(6, 1);
    let mut last = None;
    for i in 0..=MAX_FORWARD_JUMP {
        last = Some(send(&mut p.alice, &mut p.rng, &format!("{i}")));
    }
    // Counter MAX_FORWARD_JUMP on a fresh chain: a jump of exactly the limit.
    assert_eq!(
        text(&mut p.bob, &last.unwrap()),
        format!("{MAX_FORWARD_JUMP}")
    );
    assert_eq!(
        p.bob.skipped_keys(),
        MAX_SKIPPED_KEYS,
        "only the newest skipped keys are kept"
    );
}

#[test]
fn a_jump_one_past_the_limit_is_rejected_and_changes_nothing() {
    let mut p = established(7, 1);
    let mut last = None;
    for i in 0..=MAX_FORWARD_JUMP + 1 {
        last = Some(send(&mut p.alice, &mut p.rng, &format!("{i}")));
    }
    let before = p.bob.snapshot();
    let err = p.bob.decrypt(&last.unwrap()).unwrap_err();
    assert_eq!(
        err,
        SessionError::TooFarAhead {
            jump: u64::from(MAX_FORWARD_JUMP) + 1,
            max: MAX_FORWARD_JUMP
        }
    );
    assert_eq!(*p.bob.snapshot(), *before);
}

#[test]
fn skipped_keys_beyond_the_limit_evict_the_oldest() {
    let mut p = established(8, 1);
    let msgs: Vec<_> = (0..=MAX_SKIPPED_KEYS + 1)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("{i}")))
        .collect();
    // Delivering the last one skips MAX_SKIPPED_KEYS + 1 keys: the oldest is evicted.
    let last = msgs.len() - 1;
    assert_eq!(text(&mut p.bob, &msgs[last]), format!("{last}"));
    assert_eq!(p.bob.skipped_keys(), MAX_SKIPPED_KEYS);
    assert!(matches!(
        p.bob.decrypt(&msgs[0]),
        Err(SessionError::DuplicateOrExpired { counter: _ })
    ));
    assert_eq!(text(&mut p.bob, &msgs[1]), "1");
}

#[test]
fn both_sides_stepping_at_once() {
    let mut p = established(9, 2);
    // Both send before seeing the other's message: both take a DH step at once.
    let from_alice: Vec<_> = (0..3)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("a{i}")))
        .collect();
    let from_bob: Vec<_> = (0..3)
        .map(|i| send(&mut p.bob, &mut p.rng, &format!("b{i}")))
        .collect();
    for (i, m) in from_bob.iter().enumerate().rev() {
        assert_eq!(text(&mut p.alice, m), format!("b{i}"));
    }
    for (i, m) in from_alice.iter().enumerate() {
        assert_eq!(text(&mut p.bob, m), format!("a{i}"));
    }
    for round in 0..3 {
        let a = send(&mut p.alice, &mut p.rng, "x");
        let b = send(&mut p.bob, &mut p.rng, "y");
        assert_eq!(text(&mut p.bob, &a), "x", "round {round}");
        assert_eq!(text(&mut p.alice, &b), "y", "round {round}");
    }
}

#[test]
fn a_fork_from_two_replicas_is_accepted_by_the_receiver() {
    let mut p = established(10, 1);
    // Alice received Bob's latest message: her next send steps from Bob's node.
    let b = send(&mut p.bob, &mut p.rng, "to both replicas");
    assert_eq!(text(&mut p.alice, &b), "to both replicas");
    let mut replica = copy(&p.alice);
    let mut rng2 = rand::SeedableRng::seed_from_u64(99);
    let from_main = send(&mut p.alice, &mut p.rng, "from main");
    let from_replica = send(&mut replica, &mut rng2, "from replica");
    let (h1, h2) = (header(&from_main), header(&from_replica));
    assert_eq!(h1.parent, h2.parent, "both build on the same node");
    assert_ne!(h1.sender, h2.sender, "two children: a fork");
    assert_eq!(text(&mut p.bob, &from_replica), "from replica");
    assert_eq!(text(&mut p.bob, &from_main), "from main");
    // Further messages on both branches keep decrypting.
    assert_eq!(text(&mut p.bob, &send(&mut replica, &mut rng2, "r2")), "r2");
    assert_eq!(
        text(&mut p.bob, &send(&mut p.alice, &mut p.rng, "m2")),
        "m2"
    );

    // Bob's reply builds on one branch; the replica that owns it reads it, the other
    // reports an unknown parent (it must catch up from its sibling first) and is unchanged.
    let reply = send(&mut p.bob, &mut p.rng, "reply");
    let parent = header(&reply).parent;
    let (owner, other) = if parent == Some(h1.sender) {
        (&mut p.alice, &mut replica)
    } else {
        (&mut replica, &mut p.alice)
    };
    let before = other.snapshot();
    assert_eq!(
        other.decrypt(&reply).unwrap_err(),
        SessionError::UnknownParent
    );
    assert_eq!(*other.snapshot(), *before);
    assert_eq!(text(owner, &reply), "reply");
}

#[test]
fn two_replicas_continuing_one_chain_reuse_a_counter_and_the_second_is_refused() {
    // This is why siblings must sequence sends (guarded appends): two unsynchronised
    // copies of one *sending chain* would share message keys. The receiver accepts the
    // first and refuses the second with a typed error; nothing breaks.
    let mut p = established(11, 1);
    let _ = send(&mut p.alice, &mut p.rng, "chain is active");
    let mut replica = copy(&p.alice);
    let mut rng2 = rand::SeedableRng::seed_from_u64(98);
    let a = send(&mut p.alice, &mut p.rng, "a");
    let b = send(&mut replica, &mut rng2, "b");
    assert_eq!(
        (header(&a).sender, header(&a).counter),
        (header(&b).sender, header(&b).counter)
    );
    assert_ne!(
        header(&a).nonce,
        header(&b).nonce,
        "random nonces: the (key, nonce) pair never repeats"
    );
    assert_eq!(text(&mut p.bob, &a), "a");
    assert!(matches!(
        p.bob.decrypt(&b),
        Err(SessionError::DuplicateOrExpired { .. })
    ));
}

#[test]
fn branch_choice_prefers_the_longest_chain_then_the_smallest_key() {
    let mut p = established(12, 1);
    let b = send(&mut p.bob, &mut p.rng, "b");
    p.alice.decrypt(&b).unwrap();
    let mut short = copy(&p.alice);
    let mut rng2 = rand::SeedableRng::seed_from_u64(97);
    let long_msgs: Vec<_> = (0..3)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("l{i}")))
        .collect();
    let short_msg = send(&mut short, &mut rng2, "s");
    let mut bob_equal = copy(&p.bob);
    for m in &long_msgs {
        p.bob.decrypt(m).unwrap();
    }
    p.bob.decrypt(&short_msg).unwrap();
    let reply = send(&mut p.bob, &mut p.rng, "r");
    assert_eq!(
        header(&reply).parent,
        Some(header(&long_msgs[0]).sender),
        "longest chain wins"
    );

    // Equal lengths: the lexicographically smallest key wins.
    bob_equal.decrypt(&long_msgs[0]).unwrap();
    bob_equal.decrypt(&short_msg).unwrap();
    let reply = send(&mut bob_equal, &mut p.rng, "r");
    let smallest = header(&long_msgs[0]).sender.min(header(&short_msg).sender);
    assert_eq!(header(&reply).parent, Some(smallest));
}

#[test]
fn branch_choice_prefers_the_acknowledged_branch_over_a_longer_one() {
    let mut p = established(13, 1);
    let b = send(&mut p.bob, &mut p.rng, "b");
    p.alice.decrypt(&b).unwrap();
    let mut late = copy(&p.alice);
    let mut rng2 = rand::SeedableRng::seed_from_u64(96);
    let first = send(&mut p.alice, &mut p.rng, "first branch");
    p.bob.decrypt(&first).unwrap();
    let ack = send(&mut p.bob, &mut p.rng, "builds on the first branch");
    assert_eq!(header(&ack).parent, Some(header(&first).sender));
    // A longer sibling branch arrives afterwards.
    for i in 0..5 {
        p.bob
            .decrypt(&send(&mut late, &mut rng2, &format!("late{i}")))
            .unwrap();
    }
    // Bob keeps sending on the branch he acknowledged: same ratchet key, no new step.
    let next = send(&mut p.bob, &mut p.rng, "still on the first branch");
    assert_eq!(header(&next).sender, header(&ack).sender);
    assert_eq!(header(&next).parent, Some(header(&first).sender));
}

#[test]
fn restoring_an_old_snapshot_is_detected_and_recovered_without_key_reuse() {
    let mut p = established(14, 1);
    let old = p.alice.snapshot();
    let old_generation = p.alice.generation();
    let used: Vec<_> = (0..3)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("{i}")))
        .collect();
    for m in &used {
        p.bob.decrypt(m).unwrap();
    }
    let known = p.alice.generation();
    assert!(known > old_generation);
    assert_eq!(
        Session::restore(&old, known).unwrap_err(),
        SessionError::StaleSnapshot {
            snapshot: old_generation,
            known
        }
    );
    let mut restored = Session::restore_stale(&old, known).unwrap();
    assert!(restored.generation() > known);
    let mut rng2 = rand::SeedableRng::seed_from_u64(95);
    let fresh = send(&mut restored, &mut rng2, "after restore");
    let h = header(&fresh);
    for m in &used {
        assert_ne!(
            h.sender,
            header(m).sender,
            "the restored state must not reuse a spent chain"
        );
    }
    assert_eq!(text(&mut p.bob, &fresh), "after restore");
}

#[test]
fn a_snapshot_round_trips_byte_for_byte() {
    let mut p = established(15, 3);
    let _ = send(&mut p.alice, &mut p.rng, "pending");
    let snap = p.alice.snapshot();
    let restored = Session::restore(&snap, p.alice.generation()).unwrap();
    assert_eq!(*restored.snapshot(), *snap);
}

#[test]
fn corrupt_and_unknown_snapshots_are_rejected() {
    let p = established(16, 1);
    let mut snap = p.alice.snapshot().to_vec();
    assert_eq!(
        Session::restore(&[], 0).unwrap_err(),
        SessionError::CorruptSnapshot("empty".into())
    );
    snap[0] = 9;
    assert_eq!(
        Session::restore(&snap, 0).unwrap_err(),
        SessionError::UnsupportedSnapshotVersion(9)
    );
    snap[0] = chorus_core::SNAPSHOT_VERSION;
    snap.truncate(snap.len() / 2);
    assert!(matches!(
        Session::restore(&snap, 0),
        Err(SessionError::CorruptSnapshot(_))
    ));
}

#[test]
fn receiving_is_deterministic_two_copies_end_byte_identical() {
    let mut p = established(17, 2);
    let mut bob2 = copy(&p.bob);
    let mut msgs: Vec<_> = (0..6)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("{i}")))
        .collect();
    // A DH step on Alice's side in the middle of the stream.
    let mut bob_sender = copy(&p.bob);
    let r = send(&mut bob_sender, &mut p.rng, "step");
    p.alice.decrypt(&r).unwrap();
    msgs.extend((0..4).map(|i| send(&mut p.alice, &mut p.rng, &format!("n{i}"))));
    // Same messages, same (scrambled) order, duplicates and a forgery included.
    let mut forged = msgs[2].clone();
    forged.bytes[20] ^= 4;
    let schedule = [9, 1, 1, 7, 0, 3, 3, 8, 2, 6, 5, 4];
    for bob in [&mut p.bob, &mut bob2] {
        for &i in &schedule {
            let _ = bob.decrypt(&msgs[i]);
        }
        let _ = bob.decrypt(&forged);
    }
    assert_eq!(*p.bob.snapshot(), *bob2.snapshot());
}

#[test]
fn forward_secrecy_a_state_captured_after_reading_cannot_read_it_again() {
    let mut p = established(18, 2);
    let m = send(&mut p.alice, &mut p.rng, "secret");
    let later = send(&mut p.alice, &mut p.rng, "later");
    assert_eq!(text(&mut p.bob, &later), "later");
    assert_eq!(text(&mut p.bob, &m), "secret");
    let mut stolen = copy(&p.bob);
    for msg in [&m, &later] {
        assert!(matches!(
            stolen.decrypt(msg),
            Err(SessionError::DuplicateOrExpired { .. })
        ));
    }
}

#[test]
fn post_compromise_security_heals_after_one_dh_round_trip() {
    let mut p = established(19, 2);
    let mut stolen = copy(&p.bob); // the attacker's copy at time t
    // Bob steps (fresh key the attacker never saw), Alice answers on top of it.
    let b = send(&mut p.bob, &mut p.rng, "bob steps");
    assert_eq!(text(&mut p.alice, &b), "bob steps");
    let healed: Vec<_> = (0..3)
        .map(|i| send(&mut p.alice, &mut p.rng, &format!("h{i}")))
        .collect();
    for m in &healed {
        assert_eq!(stolen.decrypt(m).unwrap_err(), SessionError::UnknownParent);
    }
    for (i, m) in healed.iter().enumerate() {
        assert_eq!(text(&mut p.bob, m), format!("h{i}"));
    }
}

#[test]
fn old_private_keys_are_deleted_and_the_floor_is_announced() {
    let mut p = established(20, 1);
    let stale_alice = copy(&p.alice);
    let mut floors = Vec::new();
    for i in 0..4 {
        let b = send(&mut p.bob, &mut p.rng, &format!("b{i}"));
        floors.push(header(&b).honor_floor);
        p.alice.decrypt(&b).unwrap();
        let a = send(&mut p.alice, &mut p.rng, &format!("a{i}"));
        p.bob.decrypt(&a).unwrap();
    }
    assert!(floors.iter().all(Option::is_some));
    assert_ne!(
        floors.first(),
        floors.last(),
        "the floor advances as the peer acknowledges"
    );
    // A replica that lagged several generations builds on a key Bob has deleted.
    let mut stale_alice = stale_alice;
    let mut rng2 = rand::SeedableRng::seed_from_u64(94);
    let old_branch =
        Session::restore_stale(&stale_alice.snapshot(), stale_alice.generation()).unwrap();
    stale_alice = old_branch;
    let m = send(&mut stale_alice, &mut rng2, "from the past");
    assert_eq!(p.bob.decrypt(&m).unwrap_err(), SessionError::UnknownParent);
}

#[test]
fn the_tree_window_is_bounded() {
    let mut p = established(21, 0);
    for i in 0..MAX_TREE_NODES {
        let b = send(&mut p.bob, &mut p.rng, &format!("b{i}"));
        p.alice.decrypt(&b).unwrap();
        let a = send(&mut p.alice, &mut p.rng, &format!("a{i}"));
        p.bob.decrypt(&a).unwrap();
    }
    // Not counted (see `Tree::prune_window`): Alice's last key, which Bob has not
    // built on (our own sends the peer has not answered stay), and the two she still
    // honours replies on (the floor keeps one generation behind the newest Bob built
    // on, `HONOR_FLOOR_LAG`).
    assert_eq!(p.alice.ratchet_nodes(), MAX_TREE_NODES + 3);
    // Bob's last key was built on: only his two honoured keys are beside the window.
    assert_eq!(p.bob.ratchet_nodes(), MAX_TREE_NODES + 2);
}

#[test]
fn initial_messages_repeat_until_the_first_reply_and_may_arrive_out_of_order() {
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(22);
    let alice_id = chorus_core::LocalIdentity::generate(&mut rng);
    let bob_id = chorus_core::LocalIdentity::generate(&mut rng);
    let mut store = chorus_core::MemoryPrekeyStore::default();
    let b = bundle(&bob_id, &mut store, &mut rng, true);
    let mut alice = initiate(&alice_id, &b, &mut rng).unwrap();
    let m: Vec<_> = (0..3)
        .map(|i| send(&mut alice, &mut rng, &format!("i{i}")))
        .collect();
    assert!(m.iter().all(|x| x.kind == MessageKind::Initial));
    // The third arrives first and creates the session.
    let r = respond(&bob_id, &store, &m[2].bytes).unwrap();
    store.consume(&r.consumed);
    let mut bob = r.session;
    assert_eq!(&r.plaintext[..], b"i2");
    assert_eq!(text(&mut bob, &m[0]), "i0");
    assert_eq!(text(&mut bob, &m[1]), "i1");
    // A replay of the initial message cannot create a second session: the one-time
    // prekey is gone.
    assert_eq!(
        respond(&bob_id, &store, &m[0].bytes).unwrap_err(),
        SessionError::UnknownPrekey {
            kind: "one-time",
            id: b.one_time_prekey.as_ref().unwrap().id
        }
    );
    let reply = send(&mut bob, &mut rng, "hi");
    assert_eq!(text(&mut alice, &reply), "hi");
    assert!(!alice.awaiting_reply());
    assert_eq!(
        send(&mut alice, &mut rng, "plain").kind,
        MessageKind::Ratchet
    );
}

#[test]
fn a_stranger_cannot_make_a_first_message_carry_thousands_of_skipped_keys() {
    // The attack: encrypt 2,000 messages and deliver only the last one, so `respond`
    // would derive and keep 2,000 skipped keys for a session nobody asked for.
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(25);
    let alice_id = chorus_core::LocalIdentity::generate(&mut rng);
    let bob_id = chorus_core::LocalIdentity::generate(&mut rng);
    let mut store = chorus_core::MemoryPrekeyStore::default();
    let b = bundle(&bob_id, &mut store, &mut rng, false);
    let mut alice = initiate(&alice_id, &b, &mut rng).unwrap();
    let all: Vec<_> = (0..2_000)
        .map(|i| send(&mut alice, &mut rng, &format!("m{i}")))
        .collect();
    let limit = MAX_FIRST_MESSAGE_COUNTER as usize;
    assert_eq!(
        respond(&bob_id, &store, &all[1_999].bytes).unwrap_err(),
        SessionError::FirstMessageTooFarAhead {
            counter: 1_999,
            max: MAX_FIRST_MESSAGE_COUNTER
        }
    );
    assert_eq!(
        respond(&bob_id, &store, &all[limit + 1].bytes).unwrap_err(),
        SessionError::FirstMessageTooFarAhead {
            counter: MAX_FIRST_MESSAGE_COUNTER + 1,
            max: MAX_FIRST_MESSAGE_COUNTER
        }
    );
    // At the bound a first message still opens the session, and the earlier ones
    // decrypt from the keys it skipped.
    let r = respond(&bob_id, &store, &all[limit].bytes).unwrap();
    assert_eq!(&r.plaintext[..], format!("m{limit}").as_bytes());
    let mut bob = r.session;
    assert_eq!(text(&mut bob, &all[0]), "m0");
}

#[test]
fn the_last_resort_pq_prekey_is_used_when_no_one_time_key_is_left() {
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(23);
    let alice_id = chorus_core::LocalIdentity::generate(&mut rng);
    let bob_id = chorus_core::LocalIdentity::generate(&mut rng);
    let mut store = chorus_core::MemoryPrekeyStore::default();
    let b = bundle(&bob_id, &mut store, &mut rng, false);
    assert!(b.one_time_prekey.is_none() && b.pq_prekey.last_resort);
    for i in 0..2 {
        let mut alice = initiate(&alice_id, &b, &mut rng).unwrap();
        let m = send(&mut alice, &mut rng, "no one-time key");
        let r = respond(&bob_id, &store, &m.bytes).unwrap();
        assert_eq!(
            r.consumed,
            chorus_core::ConsumedPrekeys::default(),
            "attempt {i}: last-resort key is kept"
        );
        store.consume(&r.consumed);
    }
}

#[test]
fn an_initial_message_for_another_session_is_refused() {
    let mut p = pair(24);
    let mut q = pair(26);
    let foreign = send(&mut q.alice, &mut q.rng, "not yours");
    let before = p.bob.snapshot();
    assert_eq!(
        p.bob.decrypt(&foreign).unwrap_err(),
        SessionError::WrongSession
    );
    assert_eq!(*p.bob.snapshot(), *before);
}

#[test]
fn an_oversized_plaintext_is_refused_before_any_key_is_drawn() {
    let mut p = established(27, 1);
    let before = p.alice.snapshot();
    let big = vec![0u8; chorus_wire::limits::MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        p.alice.encrypt(&big, &mut p.rng),
        Err(SessionError::PlaintextTooLarge { .. })
    ));
    assert_eq!(*p.alice.snapshot(), *before);
    let max = vec![7u8; chorus_wire::limits::MAX_PLAINTEXT_LEN];
    let m = p.alice.encrypt(&max, &mut p.rng).unwrap();
    assert_eq!(&p.bob.decrypt(&m).unwrap()[..], &max[..]);
}

#[test]
fn after_a_stale_restore_the_fresh_chain_is_reused_not_stepped_again() {
    // Found by the schedule property test: the branch walk preferred the old (longer,
    // closed) chain, so every send forked yet another sibling.
    let mut p = established(29, 1);
    for i in 0..3 {
        p.bob
            .decrypt(&send(&mut p.alice, &mut p.rng, &format!("{i}")))
            .unwrap();
    }
    let mut restored = Session::restore_stale(&p.alice.snapshot(), p.alice.generation()).unwrap();
    let nodes_before = restored.ratchet_nodes();
    let first = send(&mut restored, &mut p.rng, "x");
    let second = send(&mut restored, &mut p.rng, "y");
    assert_eq!(
        header(&first).sender,
        header(&second).sender,
        "one fresh step, then the same chain"
    );
    assert_eq!(header(&second).counter, 1);
    assert_eq!(text(&mut p.bob, &second), "y");
    assert_eq!(text(&mut p.bob, &first), "x");
    // The fuzzer's version of the same bug: enough sends to overflow the tree window
    // used to prune the node every sibling stepped from, and sending then failed.
    for i in 0..MAX_TREE_NODES + 8 {
        let m = send(&mut restored, &mut p.rng, &format!("more{i}"));
        assert_eq!(header(&m).sender, header(&first).sender);
    }
    assert_eq!(
        restored.ratchet_nodes(),
        nodes_before + 1,
        "exactly one fresh node"
    );
}
