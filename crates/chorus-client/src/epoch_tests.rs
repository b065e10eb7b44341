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

#[tokio::test]
async fn after_a_revocation_the_revoked_store_opens_nothing_of_the_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let laptop = device(dir.path(), &url, "alice").await;
    let phone = sibling(&laptop, dir.path(), "phone", crate::Options::default()).await;
    let tablet = sibling(&laptop, dir.path(), "tablet", crate::Options::default()).await;
    let bob = device(dir.path(), &url, "bob").await;
    bob.accept(&laptop.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    laptop.sync().await.unwrap();
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
