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
        "peer_floor": h.peer_floor.map(|p| hex::encode(p.as_bytes())),
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
        peer_floor: Some(RatchetPublic::from_bytes([0x66; 32])),
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

// ---------------------------------------------------------------- linking and checkpoint

fn link_hello() -> chorus_wire::LinkHello {
    let mut rng = StdRng::seed_from_u64(7);
    let key = chorus_crypto::DeviceSigningKey::generate(&mut rng);
    let dh = chorus_crypto::DeviceDhSecret::generate(&mut rng).public_key();
    chorus_wire::LinkHello::sign(&key, dh, [0x44; 32], "tablet", &[1; 32], &[2; 32], &[3; 32])
}

#[test]
fn link_hello_vector() {
    let m = chorus_wire::LinkMessage::Hello(link_hello());
    let bytes = m.encode();
    let stored = std::fs::read(dir().join("link_hello.bin")).unwrap_or(bytes.clone());
    let chorus_wire::LinkMessage::Hello(h) = chorus_wire::LinkMessage::decode(&stored).unwrap()
    else {
        panic!("not a hello");
    };
    h.verify(&[1; 32], &[2; 32], &[3; 32]).unwrap();
    check(
        "link_hello",
        &bytes,
        json!({
            "device": hex::encode(h.device.as_bytes()),
            "dh": hex::encode(h.dh.as_bytes()),
            "nonce": hex::encode(h.nonce),
            "name": h.name,
            "signature": hex::encode(h.signature.as_bytes()),
        }),
    );
}

#[test]
fn link_messages_vector() {
    use chorus_wire::LinkMessage;
    let messages = [
        LinkMessage::Commit([0x11; 32]),
        LinkMessage::Reveal([0x22; 32]),
        LinkMessage::Bundle(vec![0x33; 48]),
        LinkMessage::Confirm,
        LinkMessage::Decline,
    ];
    // One file: each message's encoding, length-prefixed.
    let mut bytes = Vec::new();
    for m in &messages {
        let e = m.encode();
        bytes.push(u8::try_from(e.len()).unwrap());
        bytes.extend_from_slice(&e);
    }
    let stored = std::fs::read(dir().join("link_messages.bin")).unwrap_or(bytes.clone());
    let mut decoded = Vec::new();
    let mut rest = &stored[..];
    while let Some((&len, tail)) = rest.split_first() {
        let (m, tail) = tail.split_at(usize::from(len));
        decoded.push(format!("{:?}", LinkMessage::decode(m).unwrap().step()));
        rest = tail;
    }
    check("link_messages", &bytes, json!(decoded));
}

fn provisioning_bundle() -> chorus_wire::ProvisioningBundle {
    let mut rng = StdRng::seed_from_u64(8);
    let root = RootSigningKey::generate(&mut rng);
    let dh = IdentityDhSecret::generate(&mut rng);
    chorus_wire::ProvisioningBundle {
        log_id: [0x01; 32],
        relay_url: "https://relay.example:7470".into(),
        name: "alice".into(),
        intro_mailbox: [0x02; 32],
        identity_keys: IdentityKeys::sign(&root, dh.public_key()).encode(),
        root: Some(root),
        dh,
        epoch: 1,
        epoch_key: zeroize::Zeroizing::new([0x03; 32]),
        checkpoint: [0x04; 32],
        // No history: the vector's bytes predate the history fields (empty ones encode
        // to nothing).
        history_key: None,
        history: Vec::new(),
    }
}

#[test]
fn provisioning_bundle_vector() {
    let bytes = provisioning_bundle().encode();
    let stored = std::fs::read(dir().join("provisioning_bundle.bin")).unwrap_or(bytes.to_vec());
    let b = chorus_wire::ProvisioningBundle::decode(&stored).unwrap();
    let keys = IdentityKeys::decode(&b.identity_keys).unwrap();
    assert_eq!(b.root.as_ref().unwrap().public_key(), keys.root);
    assert_eq!(b.dh.public_key(), keys.dh);
    check(
        "provisioning_bundle",
        &bytes,
        json!({
            "log_id": hex::encode(b.log_id),
            "relay_url": b.relay_url,
            "name": b.name,
            "intro_mailbox": hex::encode(b.intro_mailbox),
            "root_public": hex::encode(keys.root.as_bytes()),
            "dh_public": hex::encode(keys.dh.as_bytes()),
            "epoch": b.epoch,
            "epoch_key": hex::encode(*b.epoch_key),
            "checkpoint": hex::encode(b.checkpoint),
        }),
    );
}

fn checkpoint() -> chorus_wire::Checkpoint {
    use chorus_wire::{
        CheckpointContact, CheckpointHandshake, CheckpointMailbox, CheckpointOutbox,
        CheckpointPrekey, CheckpointRegister, CheckpointStream,
    };
    let mut c = chorus_wire::Checkpoint::new(42);
    let r = c.rows_mut();
    r.lamport = 9;
    r.max_prekey_id = 12;
    r.roster = vec![vec![0x10; 80], vec![0x11; 90]];
    r.streams = vec![CheckpointStream {
        tag: b"contact:bob".to_vec(),
        version: 3,
        head: vec![0x12; 32],
    }];
    r.chain = vec![0x13; 32];
    r.seen = vec![vec![0x14; 16]];
    r.registers = vec![CheckpointRegister {
        name: "profile".into(),
        lamport: 2,
        timestamp_ms: 1_700_000_000_000,
        author: vec![0x15; 32],
        event_id: vec![0x16; 16],
        value: b"alice".to_vec(),
    }];
    r.prekeys = vec![CheckpointPrekey {
        id: 5,
        kind: "one_time".into(),
        last_resort: false,
        purpose: "directory".into(),
        public: vec![0x17; 33],
        secret: vec![0x18; 33],
        created_ms: 1_700_000_000_001,
        retired_ms: None,
    }];
    r.contacts = vec![CheckpointContact {
        name: "bob".into(),
        root_key: vec![0x19; 32],
        identity: vec![0x1a; 100],
        relay_url: "https://relay.example:7470".into(),
        send_mailbox: vec![0x1b; 32],
        recv_mailbox: vec![0x1c; 32],
        hello_acked: true,
        answered: true,
        invitation: None,
        invitation_claim: None,
        failed: None,
        added_ms: 1_700_000_000_002,
        read_up_to: 4,
        session: vec![0x1d; 200],
        roll_acked: Some(vec![0x1e; 32]),
        roll_answer: None,
        compromised: None,
        roll_steps: vec![vec![0x1f; 64]],
    }];
    r.mailboxes = vec![CheckpointMailbox {
        mailbox_id: vec![0x1c; 32],
        kind: "contact".into(),
        contact: Some("bob".into()),
        after_seq: 6,
        registered: true,
        created_ms: 1_700_000_000_003,
    }];
    r.outbox = vec![CheckpointOutbox {
        envelope_id: vec![0x1e; 16],
        contact: "bob".into(),
        relay_url: "https://relay.example:7470".into(),
        mailbox_id: vec![0x1b; 32],
        envelope: vec![0x1f; 64],
        created_ms: 1_700_000_000_004,
        author: Some(vec![0x20; 32]),
    }];
    r.handshakes = vec![CheckpointHandshake {
        contact_root: vec![0x19; 32],
        base_key: vec![0x21; 32],
    }];
    c
}

#[test]
fn checkpoint_vector() {
    let bytes = checkpoint().encode();
    let stored = std::fs::read(dir().join("checkpoint.bin")).unwrap_or(bytes.to_vec());
    let c = chorus_wire::Checkpoint::decode(&stored).unwrap();
    let r = c.rows();
    assert_eq!(
        r,
        checkpoint().rows(),
        "every row decodes to what was encoded"
    );
    check(
        "checkpoint",
        &bytes,
        json!({
            "applied_seq": r.applied_seq,
            "lamport": r.lamport,
            "max_prekey_id": r.max_prekey_id,
            "roster": r.roster.iter().map(hex::encode).collect::<Vec<_>>(),
            "chain": hex::encode(&r.chain),
            "streams": r.streams.len(),
            "registers": r.registers.len(),
            "prekeys": r.prekeys.iter().map(|p| (p.id, p.kind.clone(), hex::encode(&p.secret))).collect::<Vec<_>>(),
            "contacts": r.contacts.iter().map(|c| (c.name.clone(), hex::encode(&c.root_key), hex::encode(&c.session))).collect::<Vec<_>>(),
            "contact_roll_steps": r.contacts.iter().map(|c| c.roll_steps.iter().map(hex::encode).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "mailboxes": r.mailboxes.len(),
            "outbox": r.outbox.len(),
            "handshakes": r.handshakes.len(),
        }),
    );
}
