//! Records a correct device never appends, made here with the log's own keys: each is
//! refused by the fold with a reason, changes nothing but the cursor, and the log goes
//! on. (Forged, replayed and other-epoch records are refused in
//! `tests/constellation.rs`, from outside the crate.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chorus_core::Roster;
use chorus_crypto::{DeviceDhSecret, DeviceSigningKey, RootSigningKey};
use chorus_relay_api::Id32;
use chorus_wire::{EventKind, LogEvent, RosterBody, RosterEntry};

use super::{Pending, load_roster};
use crate::relay::{Login, RelayClient};
use crate::testing::{device, folded_state, relay};
use crate::testing::{random, rng};
use crate::{Device, Event};

fn rejections(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

async fn roster(d: &Device) -> Roster {
    let mut conn = d.store.pool().acquire().await.unwrap();
    load_roster(&mut conn, &d.log.log_id).await.unwrap()
}

/// Appends a roster entry as `d` (an authorized author: only the roster check can
/// refuse it) and returns what the fold reported.
async fn append_entry(d: &Device, entry: Vec<u8>) -> Vec<String> {
    let (_, events) = d
        .append(vec![Pending::free(EventKind::Roster { entry })])
        .await
        .unwrap();
    rejections(&events)
}

#[tokio::test]
async fn a_record_from_a_device_outside_the_roster_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let alice = device(dir.path(), &url, "alice").await;
    // A device the relay accepts but the roster does not name (as a revoked device
    // would be), holding the epoch key (as a revoked device once did).
    let rogue = DeviceSigningKey::generate(&mut rng());
    let rogue_id = *rogue.public_key().as_bytes();
    let proof = crate::testing::root_authorization(&alice, rogue.public_key()).await;
    alice
        .relay
        .add_device(Id32(rogue_id), &proof)
        .await
        .unwrap();
    let rogue_relay = RelayClient::new(&url, alice.options.backoff)
        .unwrap()
        .with_login(Login {
            log_id: alice.log.log_id,
            device: Arc::new(rogue),
        });
    let before = folded_state(&alice).await;
    let event = LogEvent {
        event_id: random(),
        lamport: 1_000,
        timestamp_ms: u64::MAX,
        author: rogue_id,
        kind: EventKind::ProfileUpdated {
            name: "mallory".into(),
        },
    };
    rogue_relay
        .append(vec![
            alice
                .log
                .seal(&event, None, &*alice.options.entropy)
                .unwrap(),
        ])
        .await
        .unwrap();
    let events = alice.sync_log().await.unwrap();
    let refused = rejections(&events);
    assert_eq!(refused.len(), 1, "{events:?}");
    assert!(refused[0].contains("not in the roster"), "{refused:?}");
    assert_eq!(folded_state(&alice).await, before);
    assert_eq!(alice.name(), "alice");

    // The log goes on: the next record of a roster device folds.
    let (_, events) = alice
        .append(vec![Pending::free(EventKind::ProfileUpdated {
            name: "alice b".into(),
        })])
        .await
        .unwrap();
    assert!(rejections(&events).is_empty());
    let name: String = sqlx::query_scalar("SELECT name FROM identity")
        .fetch_one(alice.store.pool())
        .await
        .unwrap();
    assert_eq!(name, "alice b");
}

#[tokio::test]
async fn roster_entries_with_a_bad_signature_a_foreign_signer_or_a_broken_chain_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let alice = device(dir.path(), &url, "alice").await;
    let roster_now = roster(&alice).await;
    let newcomer = DeviceSigningKey::generate(&mut rng()).public_key();
    let newcomer_dh = DeviceDhSecret::generate(&mut rng()).public_key();
    let body = RosterBody::DeviceAuthorized {
        device: newcomer,
        device_dh: newcomer_dh,
        name: "intruder".into(),
    };
    let root = alice.me.identity.root().unwrap();
    let sign_with = |key: &RootSigningKey, prev: [u8; 32]| {
        RosterEntry::sign(
            alice.log.log_id.0,
            roster_now.next_index(),
            Some(prev),
            0,
            &body,
            |b| {
                (
                    *key.public_key().as_bytes(),
                    key.sign(chorus_wire::ROSTER_CONTEXT, b),
                )
            },
        )
        .unwrap()
    };
    let before = folded_state(&alice).await;

    // 1. Signed by a key that is not the identity's root.
    let stranger = RootSigningKey::generate(&mut rng());
    let refused = append_entry(
        &alice,
        sign_with(&stranger, roster_now.head()).as_bytes().to_vec(),
    )
    .await;
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("roster entry refused"), "{refused:?}");

    // 2. The root's entry with one bit of its signature flipped.
    let good = sign_with(root, roster_now.head());
    let mut bad = good.as_bytes().to_vec();
    // The 64-byte signature is the encoding's last field: flip a bit inside it.
    let at = bad.len() - 32;
    bad[at] ^= 0x01;
    let refused = append_entry(&alice, bad).await;
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("signature"), "{refused:?}");

    // 3. Signed by the root, but chained to something else than the head.
    let refused = append_entry(&alice, sign_with(root, [7; 32]).as_bytes().to_vec()).await;
    assert_eq!(refused.len(), 1);
    assert!(refused[0].contains("roster entry refused"), "{refused:?}");

    assert_eq!(folded_state(&alice).await, before);
    assert!(!roster(&alice).await.is_authorized(&newcomer));
    assert_eq!(alice.devices().await.unwrap().len(), 1);

    // The chain is intact: the root's correct entry is accepted after all that.
    assert!(
        append_entry(&alice, good.as_bytes().to_vec())
            .await
            .is_empty()
    );
    assert!(roster(&alice).await.is_authorized(&newcomer));
    assert_eq!(alice.devices().await.unwrap().len(), 2);
}
