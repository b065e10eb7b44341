//! Shared set-up for the scenario tests: two identities with an established session.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use chorus_core::{EncryptedMessage, LocalIdentity, MemoryPrekeyStore, Session, initiate, respond};
use chorus_wire::{PrekeyBundle, RatchetMessage};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub struct Pair {
    pub rng: StdRng,
    pub alice: Session,
    pub bob: Session,
}

pub fn bundle(
    identity: &LocalIdentity,
    store: &mut MemoryPrekeyStore,
    rng: &mut StdRng,
    one_time: bool,
) -> PrekeyBundle {
    let b = PrekeyBundle {
        identity: identity.keys().clone(),
        signed_prekey: store.new_signed_prekey(identity, rng).unwrap(),
        one_time_prekey: one_time.then(|| store.new_one_time_prekey(rng)),
        pq_prekey: store.new_pq_prekey(identity, !one_time, rng).unwrap(),
    };
    PrekeyBundle::decode(&b.encode()).unwrap()
}

/// Alice initiates, Bob answers the first message; neither has replied yet.
pub fn pair(seed: u64) -> Pair {
    let mut rng = StdRng::seed_from_u64(seed);
    let alice_id = LocalIdentity::generate(&mut rng);
    let bob_id = LocalIdentity::generate(&mut rng);
    let mut store = MemoryPrekeyStore::default();
    let b = bundle(&bob_id, &mut store, &mut rng, true);
    let mut alice = initiate(&alice_id, &b, &mut rng).unwrap();
    let first = alice.encrypt(b"hello", &mut rng).unwrap();
    let r = respond(&bob_id, &store, &first.bytes).unwrap();
    assert_eq!(&r.plaintext[..], b"hello");
    Pair {
        rng,
        alice,
        bob: r.session,
    }
}

/// A pair that has completed `rounds` full round trips (each side sent and received).
pub fn established(seed: u64, rounds: usize) -> Pair {
    let mut p = pair(seed);
    for i in 0..rounds {
        let m = p
            .bob
            .encrypt(format!("b{i}").as_bytes(), &mut p.rng)
            .unwrap();
        p.alice.decrypt(&m).unwrap();
        let m = p
            .alice
            .encrypt(format!("a{i}").as_bytes(), &mut p.rng)
            .unwrap();
        p.bob.decrypt(&m).unwrap();
    }
    p
}

pub fn send(session: &mut Session, rng: &mut StdRng, text: &str) -> EncryptedMessage {
    session.encrypt(text.as_bytes(), rng).unwrap()
}

pub fn text(session: &mut Session, m: &EncryptedMessage) -> String {
    String::from_utf8(session.decrypt(m).unwrap().to_vec()).unwrap()
}

/// A copy of a session made through its persisted form (what a sibling replica or a
/// restored backup would hold).
pub fn copy(session: &Session) -> Session {
    Session::restore(&session.snapshot(), session.generation()).unwrap()
}

/// The parsed ratchet header of a message (initial or not).
pub fn header(m: &EncryptedMessage) -> chorus_wire::RatchetHeader {
    match m.kind {
        chorus_core::MessageKind::Ratchet => RatchetMessage::decode(&m.bytes).unwrap().header,
        chorus_core::MessageKind::Initial => {
            chorus_wire::InitialMessage::decode(&m.bytes)
                .unwrap()
                .message
                .header
        }
    }
}

/// A fold's state at epoch 1 before any record, restored as a store would restore it:
/// the log, its roster entries and the contacts already known.
pub fn restored(
    log_id: [u8; 32],
    roster: Vec<Vec<u8>>,
    contacts: Vec<([u8; 32], chorus_core::Contact)>,
) -> chorus_core::Constellation {
    restored_at(log_id, 1, roster, contacts)
}

/// [`restored`], at `epoch`.
pub fn restored_at(
    log_id: [u8; 32],
    epoch: u32,
    roster: Vec<Vec<u8>>,
    contacts: Vec<([u8; 32], chorus_core::Contact)>,
) -> chorus_core::Constellation {
    chorus_core::Constellation::restore(chorus_core::Parts::fresh(log_id, epoch, roster, contacts))
        .unwrap()
}
