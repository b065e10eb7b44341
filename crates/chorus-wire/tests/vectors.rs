//! Byte-level test vectors kept as files in `testdata/`.
//!
//! Each vector is a binary encoding plus a JSON file of the fields it must decode to.
//! The test decodes the stored bytes, compares every field, and re-encodes to the same
//! bytes; a change to the schema or the encoders fails here, not in a peer's client.
//! Regenerate (only on a deliberate format change) with `CHORUS_WRITE_VECTORS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::path::PathBuf;

use chorus_crypto::{
    IdentityDhSecret, Nonce, OneTimePrekeySecret, PqPrekeySecret, RatchetPublic, RootSigningKey,
    SignedPrekeySecret,
};
use chorus_wire::{
    IdentityKeys, Invitation, MailboxId, OneTimePrekey, PqPrekey, PrekeyBundle, RatchetHeader,
    RatchetMessage, SignedPrekey,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn check(name: &str, bytes: &[u8], fields: Value) {
    let bin = dir().join(format!("{name}.bin"));
    let js = dir().join(format!("{name}.json"));
    if std::env::var_os("CHORUS_WRITE_VECTORS").is_some() {
        std::fs::write(&bin, bytes).unwrap();
        std::fs::write(&js, serde_json::to_string_pretty(&fields).unwrap() + "\n").unwrap();
    }
    let stored = std::fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let expected: Value = serde_json::from_slice(&std::fs::read(&js).unwrap()).unwrap();
    assert_eq!(
        hex::encode(&stored),
        hex::encode(bytes),
        "{name}: encoding changed"
    );
    assert_eq!(
        expected, fields,
        "{name}: decoded fields differ from the vector"
    );
}

fn header_fields(h: &RatchetHeader) -> Value {
    json!({
        "sender": hex::encode(h.sender.as_bytes()),
        "parent": h.parent.map(|p| hex::encode(p.as_bytes())),
        "previous_chain_length": h.previous_chain_length,
        "counter": h.counter,
        "nonce": hex::encode(h.nonce.as_bytes()),
        "honor_floor": h.honor_floor.map(|p| hex::encode(p.as_bytes())),
    })
}

fn header() -> RatchetHeader {
    RatchetHeader {
        sender: RatchetPublic::from_bytes([0x11; 32]),
        parent: Some(RatchetPublic::from_bytes([0x22; 32])),
        previous_chain_length: 300,
        counter: 70_000,
        nonce: Nonce::from_slice(&[0x33; 12]).unwrap(),
        honor_floor: Some(RatchetPublic::from_bytes([0x44; 32])),
    }
}

#[test]
fn ratchet_header_vector() {
    let stored = std::fs::read(dir().join("ratchet_header.bin")).ok();
    let bytes = header().encode();
    check("ratchet_header", &bytes, header_fields(&header()));
    if let Some(stored) = stored {
        assert_eq!(RatchetHeader::decode(&stored).unwrap(), header());
    }
}

#[test]
fn ratchet_message_vector() {
    let hb = header().encode();
    let bytes = RatchetMessage::encode(&hb, &[0x55; 80]);
    let decoded = RatchetMessage::decode(
        &std::fs::read(dir().join("ratchet_message.bin")).unwrap_or(bytes.clone()),
    )
    .unwrap();
    assert_eq!(
        decoded.header_bytes, hb,
        "the AEAD must see the exact header bytes"
    );
    check(
        "ratchet_message",
        &bytes,
        json!({ "header": header_fields(&decoded.header), "ciphertext": hex::encode(&decoded.ciphertext) }),
    );
}

fn bundle() -> PrekeyBundle {
    let mut rng = StdRng::seed_from_u64(2026);
    let root = RootSigningKey::generate(&mut rng);
    PrekeyBundle {
        identity: IdentityKeys::sign(&root, IdentityDhSecret::generate(&mut rng).public_key()),
        signed_prekey: SignedPrekey::sign(
            &root,
            1,
            SignedPrekeySecret::generate(&mut rng).public_key(),
        ),
        one_time_prekey: Some(OneTimePrekey {
            id: 2,
            key: OneTimePrekeySecret::generate(&mut rng).public_key(),
        }),
        pq_prekey: PqPrekey::sign(
            &root,
            3,
            PqPrekeySecret::generate(&mut rng).public_key(),
            false,
        ),
    }
}

fn bundle_fields(b: &PrekeyBundle) -> Value {
    json!({
        "root": hex::encode(b.identity.root.as_bytes()),
        "identity_dh": hex::encode(b.identity.dh.as_bytes()),
        "signed_prekey": { "id": b.signed_prekey.id, "key": hex::encode(b.signed_prekey.key.as_bytes()) },
        "one_time_prekey": b.one_time_prekey.as_ref().map(|o| json!({ "id": o.id, "key": hex::encode(o.key.as_bytes()) })),
        "pq_prekey": { "id": b.pq_prekey.id, "last_resort": b.pq_prekey.last_resort, "key_prefix": hex::encode(&b.pq_prekey.key.as_bytes()[..16]) },
    })
}

#[test]
fn prekey_bundle_vector() {
    let b = bundle();
    let bytes = b.encode();
    let stored = std::fs::read(dir().join("prekey_bundle.bin")).unwrap_or(bytes.clone());
    let decoded = PrekeyBundle::decode(&stored).unwrap();
    check("prekey_bundle", &bytes, bundle_fields(&decoded));
}

#[test]
fn invitation_vector() {
    let inv = Invitation {
        bundle: bundle(),
        relay_url: "https://relay.example:7470".into(),
        mailbox: MailboxId([0x66; 32]),
        name: None,
    };
    let bytes = inv.encode();
    let stored = std::fs::read(dir().join("invitation.bin")).unwrap_or(bytes.clone());
    let decoded = Invitation::decode(&stored).unwrap();
    check(
        "invitation",
        &bytes,
        json!({ "bundle": bundle_fields(&decoded.bundle), "relay_url": decoded.relay_url, "mailbox": hex::encode(decoded.mailbox.0) }),
    );
}

#[test]
fn a_stored_vector_with_one_flipped_byte_never_decodes_to_the_same_value() {
    let stored = std::fs::read(dir().join("prekey_bundle.bin")).unwrap();
    let original = PrekeyBundle::decode(&stored).unwrap();
    for i in (0..stored.len()).step_by(37) {
        let mut bad = stored.clone();
        bad[i] ^= 0x01;
        if let Ok(b) = PrekeyBundle::decode(&bad) {
            assert_ne!(
                b, original,
                "byte {i}: a modified encoding decoded to the original bundle"
            );
        }
    }
}
