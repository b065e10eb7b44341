//! Epoch rotation after a revocation, on a real relay: the revoked device's whole store
//! (its epoch key and its own X25519 key) opens nothing of the new epoch, and a sibling
//! that was offline through the rotation catches up and writes under the new key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_core::{EpochKeyError, RecordContext, open_epoch_key, open_event};
use chorus_crypto::EpochKey;
use chorus_relay_api::RecordOut;
use chorus_wire::{EventKind, LogEvent};

use crate::Device;
use crate::testing::{device, relay, sibling, texts};

/// Opens `r` with `key`, as the fold would.
fn open(d: &Device, key: &EpochKey, r: &RecordOut) -> Option<LogEvent> {
    let context = RecordContext {
        log_id: d.log.keys.log_id.0,
        epoch: u32::try_from(r.epoch).unwrap(),
        author: r.author.0,
        guard: r
            .guard
            .as_ref()
            .map(|g| (g.stream_tag.0.as_slice(), g.expected_version)),
    };
    open_event(key, &context, &r.nonce.0, &r.ciphertext.0).ok()
}

/// Alice's laptop, phone and tablet (linked in that order) on a relay in `dir`, and
/// Bob, who accepted her invitation (the laptop has folded his first message).
async fn alice_on_three_devices_and_bob(dir: &std::path::Path) -> [Device; 4] {
    let url = relay(dir).await;
    let laptop = device(dir, &url, "alice").await;
    let phone = sibling(&laptop, dir, "phone", crate::Options::default()).await;
    let tablet = sibling(&laptop, dir, "tablet", crate::Options::default()).await;
    let bob = device(dir, &url, "bob").await;
    bob.accept(&laptop.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    laptop.sync().await.unwrap();
    [laptop, phone, tablet, bob]
}

#[tokio::test]
async fn after_a_revocation_the_revoked_store_opens_nothing_of_the_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let [laptop, phone, tablet, bob] = alice_on_three_devices_and_bob(dir.path()).await;
    phone.sync().await.unwrap();
    let (old_epoch, stolen) = tablet.log.epoch_key().await.unwrap();
    assert_eq!(old_epoch, 1);

    laptop.revoke_device("tablet").await.unwrap();
    let (epoch, key) = laptop.log.epoch_key().await.unwrap();
    assert_eq!(epoch, 2, "the revocation rotated the log's key");

    // The phone was offline through all of it: its first act is a send, decided on
    // the old epoch. Nothing of it may land under the old key; it folds the rotation,
    // takes the new key from its box and sends under it.
    phone.send("bob", "from the phone").await.unwrap();
    assert_eq!(phone.log.epoch_key().await.unwrap().0, 2);
    assert_eq!(texts(&bob.sync().await.unwrap()), ["from the phone"]);
    laptop.send("bob", "from the laptop").await.unwrap();
    bob.send("alice", "to both").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["from the laptop"]);
    for d in [&laptop, &phone] {
        assert!(texts(&d.sync().await.unwrap()).contains(&"to both".to_owned()));
    }

    // The thief: the tablet's whole store (its epoch key, its device key) and the
    // relay's copy of the log.
    // Every record of the log, as the relay stores it (what a thief with the relay's
    // data holds too).
    let records = laptop.relay.read_all_records().await.unwrap();
    let rotation = records.iter().position(|r| r.epoch == 2).unwrap();
    let event = open(&laptop, &stolen, &records[rotation]).unwrap();
    let EventKind::EpochRotated(r) = event.kind else {
        panic!("the first record of epoch 2 is the rotation");
    };
    assert_eq!(r.keys.len(), 2, "sealed to the laptop and the phone only");
    assert_eq!(
        open_epoch_key(
            &laptop.log.keys.log_id.0,
            &tablet.log.keys.device,
            &tablet.log.keys.dh,
            &r
        )
        .err(),
        Some(EpochKeyError::NotSealedToUs)
    );
    let after = &records[rotation + 1..];
    let mut kinds = Vec::new();
    for rec in after {
        assert_eq!(
            rec.epoch, 2,
            "nothing after the rotation is under the old epoch"
        );
        assert!(
            open(&laptop, &stolen, rec).is_none(),
            "the stolen key opens seq {}",
            rec.seq
        );
        let event = open(&laptop, &key, rec).expect("the new key opens it");
        kinds.push(match event.kind {
            EventKind::Sent(s) => s.text,
            EventKind::PrekeysCreated { .. } => "prekeys".into(),
            _ => String::new(),
        });
    }
    // What the thief cannot read includes the replacement prekeys and the messages.
    for wanted in ["prekeys", "from the phone", "from the laptop"] {
        assert!(kinds.iter().any(|k| k == wanted), "{wanted} in {kinds:?}");
    }

    // A device linked after the rotation starts in the new epoch and talks at once.
    let ipad = sibling(&laptop, dir.path(), "ipad", crate::Options::default()).await;
    assert_eq!(ipad.log.epoch_key().await.unwrap().0, 2);
    ipad.send("bob", "from the ipad").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["from the ipad"]);
}

/// The contact's mailbox `d` posts to and the one it reads, for contact `alias`.
async fn mailboxes(d: &Device, alias: &str) -> (chorus_relay_api::Id32, chorus_relay_api::Id32) {
    let (send, recv): (Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT send_mailbox, recv_mailbox FROM contacts WHERE name = ?")
            .bind(alias)
            .fetch_one(d.store.pool())
            .await
            .unwrap();
    let id = |b: Vec<u8>| chorus_relay_api::Id32(b.try_into().unwrap());
    (id(send), id(recv))
}

/// A message as the clone would send it on `session` (its own copy of a session).
fn forged(session: &mut chorus_core::Session, text: &str) -> Vec<u8> {
    let payload = chorus_wire::Payload {
        file: None,
        sent_ms: 0,
        text: text.to_owned(),
        hello: None,
        rolls: Vec::new(),
        roll_seen: None,
        name: None,
        timer: None,
    }
    .encode()
    .unwrap();
    let m = session
        .encrypt(&payload, &mut crate::testing::rng())
        .unwrap();
    match m.kind {
        chorus_core::MessageKind::Initial => chorus_wire::Envelope::Initial(m.bytes),
        chorus_core::MessageKind::Ratchet => chorus_wire::Envelope::Ratchet(m.bytes),
    }
    .encode()
}

#[tokio::test]
async fn after_the_heal_the_revoked_store_reads_nothing_of_bob_and_bob_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let [laptop, phone, tablet, bob] = alice_on_three_devices_and_bob(dir.path()).await;
    tablet.sync().await.unwrap();
    tablet.send("bob", "from the tablet").await.unwrap();
    bob.sync().await.unwrap();
    bob.send("alice", "hi").await.unwrap();
    assert_eq!(
        texts(&laptop.sync().await.unwrap()),
        ["from the tablet", "hi"]
    );
    laptop.send("bob", "from the laptop").await.unwrap();
    // The tablet is stolen now, with everything in it: Alice's session with Bob as it
    // stands (Alice sent last, so her chain is open), and both mailboxes' ids.
    tablet.sync().await.unwrap();
    phone.sync().await.unwrap();
    let stolen = tablet.store.load_session("bob").await.unwrap().unwrap();
    let (bobs_mailbox, alices_mailbox) = mailboxes(&tablet, "bob").await;
    assert_eq!(texts(&bob.sync().await.unwrap()), ["from the laptop"]);

    laptop.revoke_device("tablet").await.unwrap();
    // One round trip, and one more message.
    phone.send("bob", "after the revocation").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["after the revocation"]);
    bob.send("alice", "answer").await.unwrap();
    for d in [&laptop, &phone] {
        assert!(texts(&d.sync().await.unwrap()).contains(&"answer".to_owned()));
    }
    laptop.send("bob", "healed").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["healed"]);

    // Bob writes to a mailbox the tablet never knew: the phone's first message after
    // the revocation carried Alice's hello naming it.
    let (bob_writes_to, _) = mailboxes(&bob, "alice").await;
    assert_ne!(
        bob_writes_to, alices_mailbox,
        "the revoked device knew that mailbox"
    );
    assert_eq!(bob_writes_to, mailboxes(&laptop, "bob").await.1);
    assert_eq!(bob_writes_to, mailboxes(&phone, "bob").await.1);

    // The decryptor: the stolen session against everything Bob posted to Alice since
    // (the relay's data).
    let page = laptop
        .relay
        .read_mailboxes(&[(bob_writes_to, 0), (alices_mailbox, 0)], 256)
        .await
        .unwrap();
    let counts: Vec<usize> = page.results.iter().map(|r| r.envelopes.len()).collect();
    assert_eq!(
        counts,
        [1, 1],
        "Bob's answer in the new mailbox, his hi in the old"
    );
    let answer = &page.results[0].envelopes[0].payload.0;
    let chorus_wire::Envelope::Ratchet(bytes) = chorus_wire::Envelope::decode(answer).unwrap()
    else {
        panic!("Bob's answer is a ratchet message");
    };
    let message = chorus_core::EncryptedMessage {
        kind: chorus_core::MessageKind::Ratchet,
        bytes,
    };
    assert!(
        crate::testing::copy(&stolen).decrypt(&message).is_err(),
        "the revoked store read Bob's answer"
    );

    // The clone talks as Alice: on the chain it holds open, and on a fresh key forked
    // from Bob's newest key it knows. Bob shows none of it.
    let mut open = crate::testing::copy(&stolen);
    let mut forked =
        chorus_core::Session::restore_stale(&stolen.snapshot(), stolen.generation()).unwrap();
    for (i, session) in [&mut open, &mut forked].into_iter().enumerate() {
        let text = format!("the clone, attempt {i}");
        tablet
            .relay
            .post_envelope(
                bobs_mailbox,
                chorus_relay_api::Id16(crate::testing::random()),
                forged(session, &text),
            )
            .await
            .unwrap();
    }
    assert_eq!(texts(&bob.sync().await.unwrap()), Vec::<String>::new());
    // And the conversation goes on.
    phone.send("bob", "still us").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["still us"]);
    bob.send("alice", "to the new mailbox").await.unwrap();
    for d in [&laptop, &phone] {
        assert!(texts(&d.sync().await.unwrap()).contains(&"to the new mailbox".to_owned()));
    }
}
