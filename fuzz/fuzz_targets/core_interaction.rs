//! Stateful session fuzzer: a seed and a string of actions (send, deliver, drop,
//! reorder, duplicate, tamper, fork, snapshot/restore) drive two parties.
//!
//! Invariants: nothing panics; whatever decrypts equals what was sent; a message
//! decrypts at most once; a failed decrypt leaves the receiver's state unchanged; both
//! parties can always send.
#![no_main]

use chorus_core::{EncryptedMessage, LocalIdentity, MemoryPrekeyStore, Session, initiate, respond};
use chorus_wire::PrekeyBundle;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn pair() -> &'static (Vec<u8>, Vec<u8>) {
    static PAIR: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0);
        let a_id = LocalIdentity::generate(&mut rng);
        let b_id = LocalIdentity::generate(&mut rng);
        let mut store = MemoryPrekeyStore::default();
        let bundle = PrekeyBundle {
            identity: b_id.keys().clone(),
            signed_prekey: store.new_signed_prekey(&b_id, &mut rng).unwrap(),
            one_time_prekey: Some(store.new_one_time_prekey(&mut rng)),
            pq_prekey: store.new_pq_prekey(&b_id, true, &mut rng).unwrap(),
        };
        let mut alice = initiate(&a_id, &bundle, &mut rng).expect("valid bundle");
        let first = alice.encrypt(b"first", &mut rng).expect("send");
        let bob = respond(&b_id, &store, &first.bytes).expect("respond").session;
        (alice.snapshot().to_vec(), bob.snapshot().to_vec())
    })
}

struct Msg {
    m: EncryptedMessage,
    text: Vec<u8>,
    delivered: bool,
}

fn deliver(to: &mut Session, msg: &mut Msg) {
    let before = to.snapshot();
    match to.decrypt(&msg.m) {
        Ok(p) => {
            assert!(!msg.delivered, "decrypted twice");
            assert_eq!(&p[..], &msg.text[..]);
            msg.delivered = true;
        }
        Err(_) => assert_eq!(*to.snapshot(), *before, "failed decrypt changed state"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (seed, actions) = data.split_at(8);
    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(seed.try_into().unwrap_or([0; 8])));
    // The handshake (ML-KEM, signatures) is the same for every input: run it once and
    // start each input from the persisted states, so the fuzzer spends its time on the
    // ratchet. The seed still drives every ratchet key and nonce drawn afterwards.
    let (a0, b0) = pair();
    let mut alice = Session::restore(a0, 0).expect("own snapshot");
    let mut bob = Session::restore(b0, 0).expect("own snapshot");
    let mut to_bob: Vec<Msg> = Vec::new();
    let mut to_alice: Vec<Msg> = Vec::new();
    let mut n = 0u32;
    let mut it = actions.iter().copied();
    while let Some(op) = it.next() {
        let arg = usize::from(it.next().unwrap_or(0));
        n += 1;
        match op % 9 {
            0 => {
                let text = format!("a{n}").into_bytes();
                let m = alice.encrypt(&text, &mut rng).expect("alice can send");
                to_bob.push(Msg { m, text, delivered: false });
            }
            1 => {
                let text = format!("b{n}").into_bytes();
                let m = bob.encrypt(&text, &mut rng).expect("bob can send");
                to_alice.push(Msg { m, text, delivered: false });
            }
            2 if !to_bob.is_empty() => {
                let i = arg % to_bob.len();
                deliver(&mut bob, &mut to_bob[i]);
            }
            3 if !to_alice.is_empty() => {
                let i = arg % to_alice.len();
                deliver(&mut alice, &mut to_alice[i]);
            }
            4 if !to_bob.is_empty() => {
                let i = arg % to_bob.len();
                to_bob.remove(i); // drop
            }
            5 if !to_bob.is_empty() => {
                // tamper with one byte, deliver, expect rejection or a different message
                let i = arg % to_bob.len();
                let mut bad = to_bob[i].m.clone();
                let len = bad.bytes.len();
                bad.bytes[(arg * 7) % len] ^= 1 << (arg % 8);
                let before = bob.snapshot();
                if bob.decrypt(&bad).is_err() {
                    assert_eq!(*bob.snapshot(), *before);
                }
            }
            6 => {
                // fork: a replica of Alice carries on, the old state is dropped
                alice = Session::restore_stale(&alice.snapshot(), alice.generation()).expect("own snapshot");
            }
            7 => {
                bob = Session::restore(&bob.snapshot(), bob.generation()).expect("own snapshot");
            }
            8 if !to_alice.is_empty() => {
                let i = arg % to_alice.len();
                let j = (arg / 3) % to_alice.len();
                to_alice.swap(i, j); // reorder
            }
            _ => {}
        }
    }
    assert!(alice.encrypt(b"end", &mut rng).is_ok());
    assert!(bob.encrypt(b"end", &mut rng).is_ok());
});
