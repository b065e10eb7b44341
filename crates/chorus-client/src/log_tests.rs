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

use super::Pending;
use crate::relay::{Login, RelayClient};
use crate::store::log_state::{load_roster, stream_version};
use crate::testing::{device, folded_state, relay, sibling, texts};
use crate::testing::{random, rng};
use crate::{Device, Event};

/// Alice's phone and bob talking (bob wrote "hi"), then alice links a laptop.
async fn alice_and_bob_talking_and_a_laptop(dir: &std::path::Path) -> (Device, Device, Device) {
    let url = relay(dir).await;
    let phone = device(dir, &url, "alice").await;
    let bob = device(dir, &url, "bob").await;
    let code = phone.invite().await.unwrap();
    let (alias, _) = bob.accept(&code, Some("alice")).await.unwrap();
    bob.send(&alias, "hi").await.unwrap();
    phone.sync().await.unwrap();
    let laptop = sibling(&phone, dir, "laptop", crate::Options::default()).await;
    (phone, bob, laptop)
}

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
    load_roster(&mut conn, &d.log.keys.log_id).await.unwrap()
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
            log_id: alice.log.keys.log_id,
            device: Arc::new(rogue),
        });
    let before = folded_state(&alice).await;
    let event = LogEvent {
        event_id: random(),
        lamport: 1_000,
        timestamp_ms: u64::MAX,
        author: rogue_id,
        chain: Default::default(),
        kind: EventKind::ProfileUpdated {
            name: "mallory".into(),
        },
    };
    rogue_relay
        .append(vec![alice.log.seal(&event, None).await.unwrap()])
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
    let held = alice.me();
    let root = held.identity.root().unwrap();
    let sign_with = |key: &RootSigningKey, prev: [u8; 32]| {
        RosterEntry::sign(
            alice.log.keys.log_id.0,
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

/// A relay that lets two devices append at one stream version: before, both `Sent`
/// records were folded, both envelopes posted on one message key, and the contact
/// silently dropped the second. Now every device refuses the second record (it does
/// not follow the stream as folded), says the relay is not keeping the log honestly,
/// and its author learns the append was lost and re-does it on the winner's state.
#[tokio::test]
async fn a_relay_accepting_two_records_at_one_version_gets_the_second_refused_and_redone() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, bob, laptop) = alice_and_bob_talking_and_a_laptop(dir.path()).await;
    laptop.sync_log().await.unwrap();

    // The laptop encrypts at the version it folded, as a racing sibling would.
    let row = laptop
        .store
        .contact_row(laptop.store.pool(), "bob")
        .await
        .unwrap()
        .unwrap();
    let stream = super::session_stream(&row.root);
    let mut conn = laptop.store.pool().acquire().await.unwrap();
    let (_, key) = laptop.log.epoch_key().await.unwrap();
    let version = stream_version(&mut conn, &key.stream_tag(&stream))
        .await
        .unwrap();
    let mut session = laptop
        .store
        .get_session(&mut conn, "bob")
        .await
        .unwrap()
        .unwrap();
    drop(conn);
    let racing = laptop
        .encrypt_sent(&row, &mut session, random(), "two")
        .unwrap();
    // The phone wins the version honestly...
    phone.send("bob", "one").await.unwrap();
    // ...and the relay forgets it took that version, so it accepts the laptop's too.
    let relay_db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path()
            .join("relay")
            .join(chorus_relay::serve::SQLITE_FILE)
            .display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "UPDATE streams SET version = version - 1
         WHERE stream_tag = (SELECT stream_tag FROM records WHERE stream_tag IS NOT NULL
                             ORDER BY seq DESC LIMIT 1)",
    )
    .execute(&relay_db)
    .await
    .unwrap();
    let (outcome, events) = laptop
        .append(vec![Pending::guarded(racing, stream, Some(version))])
        .await
        .unwrap();
    // Its author learns the append was lost.
    assert_eq!(outcome, super::Appended::Conflict);
    let refused = rejections(&events);
    assert_eq!(refused.len(), 1, "{events:?}");
    assert!(
        refused[0].contains("not keeping the log honestly"),
        "{refused:?}"
    );
    // Every device refuses it, and nothing of it is kept or posted.
    let refused = rejections(&phone.sync_log().await.unwrap());
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(folded_state(&phone).await, folded_state(&laptop).await);
    let mut chains = Vec::new();
    for d in [&phone, &laptop] {
        let q = "SELECT hash FROM log_chain ORDER BY seq DESC LIMIT 1";
        let hash: Vec<u8> = sqlx::query_scalar(q)
            .fetch_one(d.store.pool())
            .await
            .unwrap();
        chains.push(hash);
    }
    assert_eq!(chains[0], chains[1], "one log, one chain");
    for d in [&phone, &laptop] {
        let outbox: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(d.store.pool())
            .await
            .unwrap();
        assert_eq!(
            outbox, 0,
            "only the phone's envelope was posted (and delivered)"
        );
        let texts = crate::testing::history_texts(d, "bob", 10).await;
        assert_eq!(texts.iter().filter(|t| *t == "one").count(), 1, "{texts:?}");
        assert!(!texts.iter().any(|t| t == "two"), "{texts:?}");
    }
    // The laptop re-does it on the phone's state; Bob reads both, none dropped.
    laptop.send("bob", "two").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["one", "two"]);
}

/// A relay that shows one device another history than the others — a record
/// dropped, records reordered, a record shown twice — with the seqs renumbered so
/// that no gap gives it away. Before, the device folded it and went on; now the next
/// record whose author names where it stood (its folded seq and chain hash) does not
/// match, and the device refuses it and says the relay is not keeping the log
/// honestly. Each view is a page of the relay's real records, altered, folded through
/// the same code as a sync.
#[tokio::test]
async fn a_relay_showing_one_device_another_history_is_caught_by_the_next_authors_head() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let phone = device(dir.path(), &url, "alice").await;
    let mut devices = Vec::new();
    for name in ["other", "dropped", "reordered", "doubled"] {
        devices.push(sibling(&phone, dir.path(), name, crate::Options::default()).await);
    }
    phone.sync_log().await.unwrap();
    for d in &devices {
        d.sync_log().await.unwrap();
    }
    let applied = |d: &Device| {
        let pool = d.store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT applied_seq FROM constellation")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let at = applied(&phone).await;
    for d in &devices {
        assert_eq!(applied(d).await, at);
    }
    let rename = |name: &str| {
        vec![Pending::free(EventKind::ProfileUpdated {
            name: name.into(),
        })]
    };
    // A from the phone; B from another device that had not folded A yet; C from
    // the phone, which had folded both: C names where the phone stood.
    phone.append(rename("a")).await.unwrap();
    devices[0].append(rename("b")).await.unwrap();
    phone.sync_log().await.unwrap();
    phone.append(rename("c")).await.unwrap();
    let real = phone.relay.read_records(at, 10).await.unwrap().records;
    let [a, b, c] = <[_; 3]>::try_from(real).unwrap();
    let shown = |records: Vec<&chorus_relay_api::RecordOut>| {
        records
            .into_iter()
            .enumerate()
            .map(|(i, r)| chorus_relay_api::RecordOut {
                seq: at + 1 + i as i64,
                ..r.clone()
            })
            .collect::<Vec<_>>()
    };
    let views = [
        ("dropped", shown(vec![&b, &c])),
        ("reordered", shown(vec![&b, &a, &c])),
        ("doubled", shown(vec![&a, &a, &b, &c])),
    ];
    for ((what, page), d) in views.iter().zip(&devices[1..]) {
        let refused = rejections(&d.log.fold_page(page).await.unwrap());
        assert!(
            refused
                .iter()
                .any(|r| r.contains("not keeping the log honestly")),
            "{what}: {refused:?}"
        );
    }
    // The honest view raises nothing.
    for d in [&phone, &devices[0]] {
        assert!(rejections(&d.sync_log().await.unwrap()).is_empty());
    }
}

/// The client persists what the core's fold decided and nothing else: after folding
/// contacts, sends from two devices, read markers, a block, a profile change and a
/// rename, the state restored from each device's store equals the one in memory,
/// and both devices hold the same digest.
#[tokio::test]
async fn persisted_state_equals_the_core_state() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, _bob, laptop) = alice_and_bob_talking_and_a_laptop(dir.path()).await;
    phone.send("bob", "from the phone").await.unwrap();
    laptop.sync().await.unwrap();
    laptop.send("bob", "from the laptop").await.unwrap();
    laptop.mark_read("bob").await.unwrap();
    let root = laptop
        .store
        .contact_row(laptop.store.pool(), "bob")
        .await
        .unwrap()
        .unwrap()
        .root;
    laptop
        .append(vec![
            Pending::free(EventKind::ProfileUpdated {
                name: "Alice B.".into(),
            }),
            Pending::free(EventKind::Blocked {
                contact: [0xcc; 32],
                blocked: true,
            }),
            Pending::free(EventKind::ContactUpserted {
                contact: root,
                name: "robert".into(),
                details: None,
            }),
        ])
        .await
        .unwrap();
    let mut digests = Vec::new();
    for d in [&phone, &laptop] {
        d.sync_log().await.unwrap();
        let slot = d.log.fold.lock().await;
        let in_memory = slot.as_ref().expect("folded").state.clone();
        drop(slot);
        let mut conn = d.store.pool().acquire().await.unwrap();
        let stored = crate::store::log_state::load(&mut conn, d.log.keys.log_id.0)
            .await
            .unwrap();
        assert_eq!(stored, in_memory);
        assert_eq!(in_memory.contact(&root).unwrap().alias, "robert");
        assert!(in_memory.is_blocked(&[0xcc; 32]));
        digests.push(in_memory.digest());
        // The rename re-sealed the history under the new alias: it still opens.
        let history = texts_of(&d.history("robert", 10).await.unwrap());
        assert!(
            history.ends_with(&["from the phone".into(), "from the laptop".into()]),
            "{history:?}"
        );
    }
    assert_eq!(digests[0], digests[1]);
}

fn texts_of(messages: &[crate::Message]) -> Vec<String> {
    messages.iter().map(|m| m.text.clone()).collect()
}

/// Two processes on one store (`chorus watch` in one terminal, `chorus send` in
/// another): each keeps the folded state in memory. When the other folds first, the
/// stored cursor has moved, and this one restores its state from the store before it
/// folds or appends again — else it would fold records twice and seal on a stale
/// stream version.
#[tokio::test]
async fn a_second_process_on_the_same_store_folding_first_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, _bob, _laptop) = alice_and_bob_talking_and_a_laptop(dir.path()).await;
    phone.sync_log().await.unwrap();
    let other = Device::open(
        &phone.home,
        crate::Unlock::KeyFile,
        crate::Options::default(),
    )
    .await
    .unwrap();
    other.send("bob", "from the other process").await.unwrap();
    // The phone's state in memory is behind the store now; sending folds and appends
    // on the store's state, with no record refused.
    let outcome = phone.send("bob", "from the first process").await.unwrap();
    assert!(outcome.queued.is_none(), "{:?}", outcome.queued);
    assert!(rejections(&phone.sync_log().await.unwrap()).is_empty());
    let slot = phone.log.fold.lock().await;
    let in_memory = slot.as_ref().expect("folded").state.clone();
    drop(slot);
    let mut conn = phone.store.pool().acquire().await.unwrap();
    let stored = crate::store::log_state::load(&mut conn, phone.log.keys.log_id.0)
        .await
        .unwrap();
    assert_eq!(stored, in_memory);
    let history = texts_of(&phone.history("bob", 10).await.unwrap());
    assert!(
        history.ends_with(&[
            "from the other process".into(),
            "from the first process".into()
        ]),
        "{history:?}"
    );
}

/// Alice's laptop, caught up, then away while her phone appends more than two pages
/// of profile renames: (phone, laptop, the laptop's cursor, the last name).
async fn a_laptop_away_for_three_pages(dir: &std::path::Path) -> (Device, Device, u64, String) {
    let (phone, _bob, laptop) = alice_and_bob_talking_and_a_laptop(dir).await;
    laptop.sync_log().await.unwrap();
    let before = laptop
        .log
        .fold
        .lock()
        .await
        .as_ref()
        .unwrap()
        .state
        .applied();
    let per_append = chorus_relay_api::limits::MAX_APPEND_BATCH;
    let appends = (super::LOG_PAGE as usize * 2).div_ceil(per_append) + 1;
    for i in 0..appends {
        let batch = (0..per_append)
            .map(|j| {
                Pending::free(EventKind::ProfileUpdated {
                    name: format!("alice {i}.{j}"),
                })
            })
            .collect();
        phone.append(batch).await.unwrap();
    }
    let last = format!("alice {}.{}", appends - 1, per_append - 1);
    (phone, laptop, before, last)
}

/// A sibling that was away while more than two pages were appended reads the pages
/// ahead of its fold and folds those already read together (`FOLD_BATCH`): it ends
/// in the author's state, its cursor at the head.
#[tokio::test]
async fn a_log_longer_than_a_page_is_read_ahead_and_folded_in_batches_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, laptop, before, last) = a_laptop_away_for_three_pages(dir.path()).await;
    let mut told = Vec::new();
    laptop
        .log
        .sync_log_with(|seq| told.push(seq))
        .await
        .unwrap();
    let head = phone
        .log
        .fold
        .lock()
        .await
        .as_ref()
        .unwrap()
        .state
        .applied();
    assert!(
        head - before > 2 * u64::from(super::LOG_PAGE),
        "more than two pages"
    );
    assert_eq!(told.last(), Some(&head));
    assert!(told.windows(2).all(|w| w[0] < w[1]), "{told:?}");
    let phone_state = phone.log.fold.lock().await.as_ref().unwrap().state.digest();
    let laptop_state = laptop
        .log
        .fold
        .lock()
        .await
        .as_ref()
        .unwrap()
        .state
        .digest();
    assert_eq!(laptop_state, phone_state);
    let slot = laptop.log.fold.lock().await;
    assert_eq!(
        slot.as_ref().unwrap().state.profile_name(),
        Some(last.as_str())
    );
}

/// A batch ends at the page that brings it to `FOLD_BATCH_BYTES` of ciphertext,
/// whatever its record count: with the bound at one byte every page is its own
/// batch (a progress report each), and the state is the same.
#[tokio::test]
async fn a_batch_ends_at_its_byte_bound_and_folds_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, laptop, before, _) = a_laptop_away_for_three_pages(dir.path()).await;
    let mut told = Vec::new();
    let limit = super::Batch {
        records: super::FOLD_BATCH,
        bytes: 1,
    };
    laptop
        .log
        .catch_up(limit, |seq| told.push(seq))
        .await
        .unwrap();
    let head = phone
        .log
        .fold
        .lock()
        .await
        .as_ref()
        .unwrap()
        .state
        .applied();
    let pages = (head - before).div_ceil(u64::from(super::LOG_PAGE));
    assert!(pages >= 3, "more than two pages");
    assert_eq!(told.len() as u64, pages, "one batch per page: {told:?}");
    assert_eq!(told.last(), Some(&head));
    let phone_state = phone.log.fold.lock().await.as_ref().unwrap().state.digest();
    let laptop_state = laptop
        .log
        .fold
        .lock()
        .await
        .as_ref()
        .unwrap()
        .state
        .digest();
    assert_eq!(laptop_state, phone_state);
}
