//! Ratchet benchmarks, Chorus beside vodozemac 0.11.1, plus the primitive floor measured
//! in the same run. Run with `cargo bench -p chorus-core --bench ratchet`; the results
//! table lives in `docs/benchmarks.md`.
//!
//! - `in_chain`: encrypt + decrypt of a 100-byte message on an established chain.
//! - `ping_pong`: A→B then B→A, each message taking a fresh DH ratchet step.
//! - `handshake`: initiator (session + first message) and responder (session from it).
//! - `save_load`: persist a session's state and load it back.
//! - `primitives`: one X25519 DH, one HMAC-SHA256, one AES-256-GCM seal+open of 128 B.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::hint::black_box;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use chorus_core::{LocalIdentity, MemoryPrekeyStore, Session, initiate, respond};
use chorus_crypto::{RatchetSecret, SignedPrekeySecret};
use chorus_wire::PrekeyBundle;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::Sha256;
use vodozemac::olm::{Account, OlmMessage, Session as VSession, SessionConfig};

const MSG: [u8; 100] = [0x42; 100];

struct ChorusPair {
    rng: StdRng,
    alice: Session,
    bob: Session,
}

fn chorus_bundle(rng: &mut StdRng) -> (LocalIdentity, MemoryPrekeyStore, PrekeyBundle) {
    let bob = LocalIdentity::generate(rng);
    let mut store = MemoryPrekeyStore::default();
    let bundle = PrekeyBundle {
        identity: bob.keys().clone(),
        signed_prekey: store.new_signed_prekey(&bob, rng).unwrap(),
        one_time_prekey: Some(store.new_one_time_prekey(rng)),
        pq_prekey: store.new_pq_prekey(&bob, true, rng).unwrap(),
    };
    (bob, store, bundle)
}

fn chorus_pair() -> ChorusPair {
    let mut rng = StdRng::seed_from_u64(1);
    let alice_id = LocalIdentity::generate(&mut rng);
    let (bob_id, store, bundle) = chorus_bundle(&mut rng);
    let mut alice = initiate(&alice_id, &bundle, &mut rng).unwrap();
    let m = alice.encrypt(b"hi", &mut rng).unwrap();
    let mut bob = respond(&bob_id, &store, &m.bytes).unwrap().session;
    let r = bob.encrypt(b"hi", &mut rng).unwrap();
    alice.decrypt(&r).unwrap();
    ChorusPair { rng, alice, bob }
}

fn vodozemac_pair() -> (VSession, VSession) {
    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    let mut a = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .unwrap();
    let OlmMessage::PreKey(pre) = a.encrypt(b"hi").unwrap() else {
        unreachable!()
    };
    let mut b = bob
        .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &pre)
        .unwrap()
        .session;
    let r = b.encrypt(b"hi").unwrap();
    a.decrypt(&r).unwrap();
    (a, b)
}

fn in_chain(c: &mut Criterion) {
    let mut g = c.benchmark_group("in_chain_encrypt_decrypt_100B");
    let mut p = chorus_pair();
    g.bench_function("chorus", |b| {
        b.iter(|| {
            let m = p.alice.encrypt(black_box(&MSG), &mut p.rng).unwrap();
            black_box(p.bob.decrypt(&m).unwrap());
        })
    });
    let (mut a, mut bb) = vodozemac_pair();
    g.bench_function("vodozemac", |b| {
        b.iter(|| {
            let m = a.encrypt(black_box(&MSG)).unwrap();
            black_box(bb.decrypt(&m).unwrap());
        })
    });
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong_dh_step");
    let mut p = chorus_pair();
    g.bench_function("chorus", |b| {
        b.iter(|| {
            let m = p.alice.encrypt(&MSG, &mut p.rng).unwrap();
            p.bob.decrypt(&m).unwrap();
            let r = p.bob.encrypt(&MSG, &mut p.rng).unwrap();
            black_box(p.alice.decrypt(&r).unwrap());
        })
    });
    let (mut a, mut bb) = vodozemac_pair();
    g.bench_function("vodozemac", |b| {
        b.iter(|| {
            let m = a.encrypt(MSG).unwrap();
            bb.decrypt(&m).unwrap();
            let r = bb.encrypt(MSG).unwrap();
            black_box(a.decrypt(&r).unwrap());
        })
    });
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    let mut rng = StdRng::seed_from_u64(2);
    let alice_id = LocalIdentity::generate(&mut rng);
    let (bob_id, store, bundle) = chorus_bundle(&mut rng);
    g.bench_function("chorus_initiator", |b| {
        b.iter(|| {
            let mut s = initiate(&alice_id, black_box(&bundle), &mut rng).unwrap();
            black_box(s.encrypt(&MSG, &mut rng).unwrap())
        })
    });
    let first = initiate(&alice_id, &bundle, &mut rng)
        .unwrap()
        .encrypt(&MSG, &mut rng)
        .unwrap();
    g.bench_function("chorus_responder", |b| {
        b.iter(|| black_box(respond(&bob_id, &store, black_box(&first.bytes)).unwrap()))
    });

    let alice = Account::new();
    let mut bob = Account::new();
    bob.generate_one_time_keys(1);
    let otk = *bob.one_time_keys().values().next().unwrap();
    g.bench_function("vodozemac_initiator", |b| {
        b.iter(|| {
            let mut s = alice
                .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
                .unwrap();
            black_box(s.encrypt(MSG).unwrap())
        })
    });
    let mut s = alice
        .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
        .unwrap();
    let OlmMessage::PreKey(pre) = s.encrypt(MSG).unwrap() else {
        unreachable!()
    };
    // vodozemac removes the one-time key on success; recreate the account state per
    // iteration from a pickle so every iteration does the same work.
    let bob_pickle = serde_json::to_string(&bob.pickle()).unwrap();
    g.bench_function("vodozemac_responder", |b| {
        b.iter_batched(
            || Account::from_pickle(serde_json::from_str(&bob_pickle).unwrap()),
            |mut acct| {
                black_box(
                    acct.create_inbound_session(
                        SessionConfig::version_1(),
                        alice.curve25519_key(),
                        &pre,
                    )
                    .unwrap(),
                )
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn save_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("session_save_load");
    let p = chorus_pair();
    g.bench_function("chorus", |b| {
        b.iter(|| {
            let snap = p.alice.snapshot();
            black_box(Session::restore(&snap, 0).unwrap())
        })
    });
    let (a, _) = vodozemac_pair();
    g.bench_function("vodozemac", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(&a.pickle()).unwrap();
            black_box(VSession::from_pickle(
                serde_json::from_slice(&json).unwrap(),
            ))
        })
    });
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitives");
    let mut rng = StdRng::seed_from_u64(3);
    let a = RatchetSecret::generate(&mut rng);
    let b_pub = SignedPrekeySecret::generate(&mut rng).public_key();
    g.bench_function("x25519_dh", |b| {
        b.iter(|| black_box(a.diffie_hellman(black_box(&b_pub)).unwrap()))
    });
    g.bench_function("x25519_keygen", |b| {
        b.iter(|| black_box(RatchetSecret::generate(&mut rng).public_key()))
    });
    let key = [7u8; 32];
    g.bench_function("hmac_sha256", |b| {
        b.iter(|| {
            let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(black_box(&key)).unwrap();
            m.update(&[1]);
            black_box(m.finalize().into_bytes())
        })
    });
    let cipher_key = [9u8; 32];
    let nonce = [1u8; 12];
    g.bench_function("aes256gcm_seal_open_128B", |b| {
        b.iter(|| {
            let cipher = Aes256Gcm::new(black_box(&cipher_key).into());
            let mut buf = [0x42u8; 128];
            let tag = cipher
                .encrypt_inout_detached((&nonce).into(), b"", (&mut buf[..]).into())
                .unwrap();
            let cipher = Aes256Gcm::new(black_box(&cipher_key).into());
            cipher
                .decrypt_inout_detached((&nonce).into(), b"", (&mut buf[..]).into(), &tag)
                .unwrap();
            black_box(buf)
        })
    });
    g.finish();
}

criterion_group!(
    benches, primitives, in_chain, ping_pong, handshake, save_load
);
criterion_main!(benches);
