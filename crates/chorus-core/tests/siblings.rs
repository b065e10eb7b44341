//! Several devices of one identity sharing one session through ratchet deltas
//! (DESIGN §6, strategy `sequenced`).
//!
//! Alice has several replicas. Sends are sequenced: a replica sends only after it has
//! applied every earlier delta (the guarded log append enforces this in the client) and
//! read Bob's mailbox. Everything else is free: each replica applies deltas and reads
//! Bob's messages in its own interleaving. The property test checks that
//! - Bob decrypts every message, whichever replica sent it, as from one device;
//! - every replica decrypts every message of Bob's exactly once — a message that builds
//!   on a key from a delta the replica has not applied yet fails with `UnknownParent`,
//!   changes nothing, and decrypts once the delta is applied;
//! - after catching up, all replicas hold the same ratchet state (`state_digest`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

mod common;

use chorus_core::{EncryptedMessage, Session, SessionError};
use common::{copy, pair};
use proptest::prelude::*;

struct Replica {
    session: Session,
    /// Deltas applied (index into the log).
    applied: usize,
    /// Bob's messages received (index into the mailbox).
    received: usize,
    texts: Vec<String>,
    /// Messages that had to wait for a delta.
    parked: usize,
}

impl Replica {
    fn apply_next(&mut self, log: &[Vec<u8>]) -> bool {
        let Some(delta) = log.get(self.applied) else {
            return false;
        };
        self.session.apply_send_delta(delta).unwrap();
        self.applied += 1;
        true
    }

    /// Returns false when there is nothing to receive or the message is parked.
    fn receive_next(&mut self, mailbox: &[(EncryptedMessage, String)], log_len: usize) -> bool {
        let Some((m, text)) = mailbox.get(self.received) else {
            return false;
        };
        let before = self.session.state_digest();
        match self.session.decrypt(m) {
            Ok(p) => {
                assert_eq!(String::from_utf8(p.to_vec()).unwrap(), *text);
                self.texts.push(text.clone());
                self.received += 1;
                true
            }
            Err(SessionError::UnknownParent) => {
                assert!(
                    self.applied < log_len,
                    "a message may only wait for a delta this replica has not applied"
                );
                assert_eq!(
                    self.session.state_digest(),
                    before,
                    "a parked message changes nothing"
                );
                self.parked += 1;
                false
            }
            Err(e) => panic!("replica failed to decrypt Bob's message: {e}"),
        }
    }

    fn catch_up(&mut self, log: &[Vec<u8>], mailbox: &[(EncryptedMessage, String)]) {
        while self.apply_next(log) || self.receive_next(mailbox, log.len()) {}
        assert_eq!(self.applied, log.len());
        assert_eq!(self.received, mailbox.len());
    }
}

#[derive(Debug, Clone)]
enum Action {
    AliceSends(usize),
    BobSends,
    DeliverToBob(usize),
    ApplyDelta(usize),
    Receive(usize),
}

fn action(replicas: usize) -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0..replicas).prop_map(Action::AliceSends),
        2 => Just(Action::BobSends),
        2 => (0..8usize).prop_map(Action::DeliverToBob),
        2 => (0..replicas).prop_map(Action::ApplyDelta),
        2 => (0..replicas).prop_map(Action::Receive),
    ]
}

/// Runs the script and returns how many messages each replica had to park.
fn run(seed: u64, replicas: usize, actions: &[Action]) -> Vec<usize> {
    let mut p = pair(seed);
    // Bob answers first so every replica starts from an answered session.
    let first = p.bob.encrypt(b"hi", &mut p.rng).unwrap();
    p.alice.decrypt(&first).unwrap();
    let mut alice: Vec<Replica> = (0..replicas)
        .map(|_| Replica {
            session: copy(&p.alice),
            applied: 0,
            received: 0,
            texts: Vec::new(),
            parked: 0,
        })
        .collect();
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut to_bob: Vec<(EncryptedMessage, String)> = Vec::new();
    let mut bob_got: Vec<Option<String>> = Vec::new();
    let mut mailbox: Vec<(EncryptedMessage, String)> = Vec::new();

    for a in actions {
        match a {
            Action::AliceSends(r) => {
                let rep = &mut alice[*r];
                rep.catch_up(&log, &mailbox);
                let text = format!("a{} from replica {r}", to_bob.len());
                let (m, delta) = rep
                    .session
                    .encrypt_escrowed(text.as_bytes(), &mut p.rng)
                    .unwrap();
                // The sender's own delta, read back from the log, is a no-op.
                assert!(!rep.session.apply_send_delta(delta.as_bytes()).unwrap());
                log.push(delta.as_bytes().to_vec());
                rep.applied += 1;
                to_bob.push((m, text));
                bob_got.push(None);
            }
            Action::BobSends => {
                let text = format!("b{}", mailbox.len());
                let m = p.bob.encrypt(text.as_bytes(), &mut p.rng).unwrap();
                mailbox.push((m, text));
            }
            Action::DeliverToBob(k) => {
                let pending: Vec<usize> = (0..to_bob.len())
                    .filter(|i| bob_got[*i].is_none())
                    .collect();
                if let Some(&i) = pending.get(k % pending.len().max(1)) {
                    let plain = p.bob.decrypt(&to_bob[i].0).unwrap();
                    let plain = String::from_utf8(plain.to_vec()).unwrap();
                    assert_eq!(plain, to_bob[i].1);
                    bob_got[i] = Some(plain);
                }
            }
            Action::ApplyDelta(r) => {
                alice[*r].apply_next(&log);
            }
            Action::Receive(r) => {
                alice[*r].receive_next(&mailbox, log.len());
            }
        }
    }
    // Everything still in flight arrives.
    for i in 0..to_bob.len() {
        if bob_got[i].is_none() {
            let plain = p.bob.decrypt(&to_bob[i].0).unwrap();
            assert_eq!(String::from_utf8(plain.to_vec()).unwrap(), to_bob[i].1);
        }
    }
    let expected: Vec<String> = mailbox.iter().map(|(_, t)| t.clone()).collect();
    for rep in &mut alice {
        rep.catch_up(&log, &mailbox);
        assert_eq!(
            rep.texts, expected,
            "each of Bob's messages exactly once, in order"
        );
    }
    let digest = alice[0].session.state_digest();
    for rep in &alice[1..] {
        assert_eq!(rep.session.state_digest(), digest, "replicas converge");
    }
    // And the conversation goes on from any replica after catching up.
    let last = alice.len() - 1;
    let m = alice[last]
        .session
        .encrypt(b"still here", &mut p.rng)
        .unwrap();
    assert_eq!(&p.bob.decrypt(&m).unwrap()[..], b"still here");
    alice.iter().map(|r| r.parked).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn replicas_sharing_a_session_through_deltas_converge(
        seed in any::<u64>(),
        actions in proptest::collection::vec(action(3), 1..60),
    ) {
        run(seed, 3, &actions);
    }
}

#[test]
fn a_delta_that_builds_on_a_message_the_replica_has_not_read_waits_for_nothing() {
    // Replica 0 reads Bob's reply and steps on it; replica 1 applies the delta before it
    // has read that reply (its parent is unknown to it), then reads the reply.
    run(
        7,
        2,
        &[
            Action::BobSends,
            Action::AliceSends(0),
            Action::ApplyDelta(1),
            Action::Receive(1),
            Action::DeliverToBob(0),
            Action::AliceSends(1),
        ],
    );
}

#[test]
fn a_reply_on_a_key_from_an_unapplied_delta_is_parked_then_decrypts() {
    let actions = [
        Action::AliceSends(0),
        Action::DeliverToBob(0),
        Action::BobSends,
        // Replica 1 reads Bob's reply, which builds on replica 0's new key: parked.
        Action::Receive(1),
        Action::ApplyDelta(1),
        Action::Receive(1),
    ];
    assert_eq!(run(11, 2, &actions), vec![0, 1]);
}

#[test]
fn malformed_deltas_are_refused_and_change_nothing() {
    let mut p = pair(3);
    let reply = p.bob.encrypt(b"r", &mut p.rng).unwrap();
    p.alice.decrypt(&reply).unwrap();
    let mut sibling = copy(&p.alice);
    let (_, delta) = p.alice.encrypt_escrowed(b"x", &mut p.rng).unwrap();
    let good = delta.as_bytes().to_vec();
    let before = sibling.state_digest();
    let mut wrong_version = good.clone();
    wrong_version[0] = 9;
    let mut bad_flag = good.clone();
    // Bit 0: the contact answered; bit 1: a heal's anchor; nothing else is defined.
    bad_flag[1] = 4;
    let mut flipped_key = good.clone();
    flipped_key[2] ^= 1;
    for bad in [
        Vec::new(),
        vec![1],
        wrong_version,
        bad_flag,
        good[..good.len() - 1].to_vec(),
        flipped_key,
    ] {
        assert!(matches!(
            sibling.apply_send_delta(&bad),
            Err(SessionError::CorruptSnapshot(_))
        ));
        assert_eq!(sibling.state_digest(), before);
    }
    assert!(sibling.apply_send_delta(&good).unwrap());
    assert!(
        !sibling.apply_send_delta(&good).unwrap(),
        "applying twice is a no-op"
    );
    assert_eq!(sibling.state_digest(), p.alice.state_digest());
}

#[test]
fn a_replica_back_after_months_applies_every_send_first_and_still_reads_every_answer() {
    // The window keeps MAX_TREE_NODES nodes; a replica that was away applies its
    // siblings' sends (from the log) before it reads the contact's answers to them
    // (from the mailbox). Sixty days of one message a day from Alice and two answers
    // from Bob is far past the window.
    let mut p = common::established(77, 1);
    let mut away = copy(&p.alice);
    let (mut deltas, mut answers) = (Vec::new(), Vec::new());
    for day in 0..60 {
        let (m, delta) = p
            .alice
            .encrypt_escrowed(format!("day {day}").as_bytes(), &mut p.rng)
            .unwrap();
        deltas.push(delta);
        common::text(&mut p.bob, &m);
        for n in ["bob", "bob again"] {
            let a = common::send(&mut p.bob, &mut p.rng, &format!("day {day}: {n}"));
            assert_eq!(common::text(&mut p.alice, &a), format!("day {day}: {n}"));
            answers.push(a);
        }
    }
    for d in &deltas {
        away.apply_send_delta(d.as_bytes()).unwrap();
    }
    for (i, a) in answers.iter().enumerate() {
        let got = away
            .decrypt(a)
            .map(|t| String::from_utf8(t.to_vec()).unwrap());
        assert!(got.is_ok(), "answer {i}: {got:?}");
    }
    // The window, beside it the keys Alice still honours replies on (the newest
    // unanswered one and the floor's two).
    assert!(away.ratchet_nodes() <= chorus_core::MAX_TREE_NODES + 3);
    assert_eq!(away.state_digest(), p.alice.state_digest());
}

/// Found by the simulator (`chorus-sim --seed 0 --faults 1`): a replica that folded its
/// siblings' sends but never read the peer's messages they answered held our newest
/// sending node without the peer key it builds on. It then stepped from the newest
/// peer key it *had* read — one the peer, seeing newer keys acknowledged, had already
/// deleted — and the peer could not read it (`UnknownParent`): the message was lost.
/// A replica must send from the newest node the identity holds, read or not.
#[test]
fn a_replica_that_never_read_what_its_siblings_answered_still_sends_readable_messages() {
    let mut p = pair(21);
    let first = p.bob.encrypt(b"hi", &mut p.rng).unwrap();
    p.alice.decrypt(&first).unwrap();
    // Alice has two replicas: `reader` reads Bob and answers; `lagging` only folds the
    // log (the answers' deltas), never the mailbox.
    let mut reader = copy(&p.alice);
    let mut lagging = copy(&p.alice);
    for i in 0..4 {
        let m = p
            .bob
            .encrypt(format!("b{i}").as_bytes(), &mut p.rng)
            .unwrap();
        reader.decrypt(&m).unwrap();
        let (answer, delta) = reader
            .encrypt_escrowed(format!("a{i}").as_bytes(), &mut p.rng)
            .unwrap();
        lagging.apply_send_delta(delta.as_bytes()).unwrap();
        p.bob.decrypt(&answer).unwrap();
    }
    let m = lagging
        .encrypt(b"from the lagging replica", &mut p.rng)
        .unwrap();
    assert_eq!(
        &p.bob.decrypt(&m).unwrap()[..],
        b"from the lagging replica",
        "the peer reads a replica that never read the mailbox"
    );
}

/// Leaderless (`Session::step_on_next_send`): every send is a fresh DH step. Replicas
/// that fold each other's sends but hear nothing new from the peer all step from the
/// same peer key, so the peer receives many children of one of its keys (a wide
/// fork); it must read every one.
#[test]
fn a_wide_fork_of_fresh_steps_from_one_peer_key_is_read_whole() {
    let mut p = pair(23);
    let first = p.bob.encrypt(b"hi", &mut p.rng).unwrap();
    p.alice.decrypt(&first).unwrap();
    let mut replicas: Vec<Session> = (0..3).map(|_| copy(&p.alice)).collect();
    let mut sent = Vec::new();
    for n in 0..15 {
        for r in 0..replicas.len() {
            let text = format!("replica {r} message {n}");
            let rep = &mut replicas[r];
            rep.step_on_next_send();
            let (m, delta) = rep.encrypt_escrowed(text.as_bytes(), &mut p.rng).unwrap();
            for (i, other) in replicas.iter_mut().enumerate() {
                if i != r {
                    other.apply_send_delta(delta.as_bytes()).unwrap();
                }
            }
            sent.push((m, text));
        }
    }
    for (i, (m, text)) in sent.iter().enumerate() {
        match p.bob.decrypt(m) {
            Ok(plain) => assert_eq!(&plain[..], text.as_bytes()),
            Err(e) => panic!("message {i} ({text}): {e:?}"),
        }
    }
}

/// The widest fork the window keeps: peer nodes pruned while our key they came from is
/// still held become stubs that refuse their messages (no replay), up to
/// `MAX_TREE_STUBS`; the tree stays bounded however wide the fork.
#[test]
fn a_fork_wider_than_the_window_refuses_replays_and_stays_bounded() {
    use chorus_core::{MAX_TREE_NODES, MAX_TREE_STUBS};
    let mut p = pair(24);
    let first = p.bob.encrypt(b"hi", &mut p.rng).unwrap();
    p.alice.decrypt(&first).unwrap();
    let wide = MAX_TREE_NODES + MAX_TREE_STUBS + 40;
    let mut sent = Vec::new();
    for n in 0..wide {
        let text = format!("fresh step {n}");
        p.alice.step_on_next_send();
        let m = p.alice.encrypt(text.as_bytes(), &mut p.rng).unwrap();
        assert_eq!(&p.bob.decrypt(&m).unwrap()[..], text.as_bytes(), "{n}");
        sent.push(m);
    }
    assert!(
        p.bob.ratchet_nodes() <= MAX_TREE_NODES + MAX_TREE_STUBS + 4,
        "{} nodes",
        p.bob.ratchet_nodes()
    );
    // Every message on a node still in the window, or pruned into a stub, is refused
    // when replayed; only those whose stubs went past MAX_TREE_STUBS could be read
    // again (the fork is one depth wide, so which go is decided by key order).
    let replayed = sent.iter().filter(|m| p.bob.decrypt(m).is_ok()).count();
    assert!(
        replayed <= wide - MAX_TREE_NODES - MAX_TREE_STUBS,
        "{replayed} of {wide} replays read again"
    );
    // The conversation goes on.
    let reply = p.bob.encrypt(b"all read", &mut p.rng).unwrap();
    assert_eq!(&p.alice.decrypt(&reply).unwrap()[..], b"all read");
}
