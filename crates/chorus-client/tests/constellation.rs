#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Several devices of one identity against a real relay (loopback axum app, SQLite
//! file), each with its own store: linking, sequenced sends from any device, receiving
//! on every device, and the refusals linking must make.

use std::path::Path;
use std::time::Duration;

use chorus_client::link::{Approval, LinkCode, LinkOffer, LinkPending};
use chorus_client::{ClientError, Device, Event, Unlock};
use chorus_wire::SecurityLevel;

mod common;
use common::{Relay, TestClock, device as init, device_names, options};

/// A relay, a tempdir, a clock, and alice's first device (home `alice`).
async fn alice() -> (Relay, tempfile::TempDir, TestClock, Device) {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let laptop = init(dir.path(), "alice", &relay, &clock).await;
    (relay, dir, clock, laptop)
}

/// Bob, a contact of `alice`'s by her invitation (both sides synced).
async fn bob_for(alice: &Device, dir: &Path, relay: &Relay, clock: &TestClock) -> Device {
    let bob = init(dir, "bob", relay, clock).await;
    let code = alice.invite().await.unwrap();
    bob.accept(&code, None).await.unwrap();
    alice.sync().await.unwrap();
    bob
}

/// The two sides of a link meet: the approver takes the offer's code, both compute
/// the SAS, and the screens agree. Nothing is confirmed yet.
async fn meet(existing: &Device, offer: LinkOffer) -> (LinkPending, Approval<'_>) {
    let code = offer.code();
    let new_side = tokio::spawn(async move {
        offer
            .wait_for_approver(Duration::from_secs(20))
            .await
            .unwrap()
    });
    let approval = existing.approve_link(&code).await.unwrap();
    let pending = new_side.await.unwrap();
    assert_eq!(pending.sas(), approval.sas(), "both screens show one SAS");
    (pending, approval)
}

async fn offer(existing: &Device, home: &Path, name: &str, clock: &TestClock) -> LinkOffer {
    LinkOffer::new(
        home,
        Unlock::KeyFile,
        &existing.relay_url(),
        name,
        &options(clock),
    )
    .await
    .unwrap()
}

/// Links a new device into `existing`'s identity; both sides check the SAS matches.
async fn link(existing: &Device, dir: &Path, home: &str, clock: &TestClock) -> Device {
    let (pending, approval) = meet(
        existing,
        offer(existing, &dir.join(home), home, clock).await,
    )
    .await;
    assert_eq!(approval.device_name(), home);
    let pending = pending.confirm().await.unwrap();
    approval.confirm().await.unwrap();
    let mut seen = Vec::new();
    let device = pending
        .finish(options(clock), Duration::from_secs(20), |p| seen.push(p))
        .await
        .unwrap();
    assert!(!seen.is_empty(), "catch-up reports progress");
    device
}

async fn history(d: &Device, contact: &str) -> Vec<(bool, String)> {
    d.history(contact, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.outgoing, m.text))
        .collect()
}

#[tokio::test]
async fn a_linked_device_is_the_same_identity_and_sends_and_receives_at_once() {
    let (relay, dir, clock, laptop) = alice().await;
    let bob = bob_for(&laptop, dir.path(), &relay, &clock).await;
    bob.send("alice", "before the phone").await.unwrap();
    laptop.sync().await.unwrap();

    let phone = link(&laptop, dir.path(), "phone", &clock).await;
    // The checkpoint (session snapshots as of the link) is gone from the relay.
    assert_eq!(relay.blobs().await, 0);
    // One identity: same fingerprint, same contacts.
    assert_eq!(phone.fingerprint(), laptop.fingerprint());
    assert_eq!(
        phone.contacts().await.unwrap()[0].name,
        laptop.contacts().await.unwrap()[0].name
    );
    assert_eq!(laptop.devices().await.unwrap().len(), 2);
    assert_eq!(phone.devices().await.unwrap().len(), 2);

    // The phone sends at once; bob sees one alice.
    clock.tick();
    phone.send("bob", "from the phone").await.unwrap();
    clock.tick();
    laptop.send("bob", "from the laptop").await.unwrap();
    let got: Vec<String> = bob
        .sync()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            chorus_client::Event::Message(m) => Some(m.text),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["from the phone", "from the laptop"]);
    assert_eq!(bob.contacts().await.unwrap().len(), 1);

    // Bob answers; both devices read it.
    clock.tick();
    bob.send("alice", "hi both").await.unwrap();
    phone.sync().await.unwrap();
    laptop.sync().await.unwrap();
    let on_phone = history(&phone, "bob").await;
    let on_laptop = history(&laptop, "bob").await;
    assert!(on_phone.contains(&(false, "hi both".to_owned())));
    assert!(on_phone.contains(&(true, "from the laptop".to_owned())));
    // History from the link time on: the phone has what happened since it joined,
    // in the same order as the laptop.
    let tail = &on_laptop[on_laptop.len() - on_phone.len()..];
    assert_eq!(on_phone, tail);

    // Read on one device is read on all.
    assert!(phone.contacts().await.unwrap()[0].unread > 0);
    laptop.mark_read("bob").await.unwrap();
    assert_eq!(laptop.contacts().await.unwrap()[0].unread, 0);
    phone.sync().await.unwrap();
    assert_eq!(phone.contacts().await.unwrap()[0].unread, 0);
}

#[tokio::test]
async fn concurrent_sends_from_two_devices_form_one_linear_conversation() {
    let (relay, dir, clock, laptop) = alice().await;
    let bob = bob_for(&laptop, dir.path(), &relay, &clock).await;
    let phone = link(&laptop, dir.path(), "phone", &clock).await;

    let (laptop, phone) = (std::sync::Arc::new(laptop), std::sync::Arc::new(phone));
    let mut tasks = Vec::new();
    for (d, who) in [(laptop.clone(), "laptop"), (phone.clone(), "phone")] {
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                d.send("bob", &format!("{who} {i}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // How often the loser path (encrypt again on the winner's state) ran: printed, as
    // a race cannot be forced from outside; the core's siblings test covers it always.
    println!(
        "sends that lost a race and were re-encrypted: {}",
        laptop.lost_races() + phone.lost_races()
    );
    bob.sync().await.unwrap();
    let at_bob = history(&bob, "alice").await;
    assert_eq!(at_bob.len(), 20, "nothing lost, nothing duplicated");
    laptop.sync().await.unwrap();
    phone.sync().await.unwrap();
    assert_eq!(history(&laptop, "bob").await, history(&phone, "bob").await);
    // The session went on linearly: bob's answer reaches both.
    bob.send("alice", "got all twenty").await.unwrap();
    laptop.sync().await.unwrap();
    phone.sync().await.unwrap();
    assert_eq!(history(&laptop, "bob").await, history(&phone, "bob").await);
    assert_eq!(history(&phone, "bob").await.len(), 21);
}

#[tokio::test]
async fn bad_and_reused_link_codes_are_refused_and_change_nothing() {
    let (_relay, dir, clock, laptop) = alice().await;
    let offer = offer(&laptop, &dir.path().join("phone"), "phone", &clock).await;
    let code = offer.code();
    let mut tampered = code.clone();
    tampered.insert(20, 'x');
    for (bad, expect) in [
        ("chorus:abc".to_owned(), "does not start"),
        (code[..code.len() - 3].to_owned(), ""),
        (tampered, ""),
    ] {
        let e = laptop.approve_link(&bad).await.err().unwrap();
        assert!(matches!(e, ClientError::BadLinkCode { .. }), "{e}");
        assert!(e.to_string().contains(expect), "{e}");
    }
    // A code for a channel that does not exist (expired) is refused.
    let mut gone = LinkCode::decode(&code).unwrap();
    gone.channel = [7; 32];
    assert!(matches!(
        laptop.approve_link(&gone.encode()).await,
        Err(ClientError::LinkExpired)
    ));
    // Used once (a first approver committed), a code cannot be used again.
    let waiting =
        tokio::spawn(async move { offer.wait_for_approver(Duration::from_secs(20)).await });
    let first = laptop.approve_link(&code).await.unwrap();
    assert!(matches!(
        laptop.approve_link(&code).await,
        Err(ClientError::LinkCodeUsed)
    ));
    let pending = waiting.await.unwrap().unwrap();
    assert_eq!(pending.sas(), first.sas());
    // Nothing was authorized before the confirmation.
    assert_eq!(laptop.devices().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_interrupted_link_resumes_as_the_same_device_and_never_adds_a_second() {
    let (relay, dir, clock, laptop) = alice().await;
    let home = dir.path().join("phone");
    // 1. The approver confirms (the phone is in the roster), then the phone stops
    //    before it reads the bundle.
    let first = offer(&laptop, &home, "phone", &clock).await;
    assert!(!first.resumed());
    let (pending, approval) = meet(&laptop, first).await;
    let pending = pending.confirm().await.unwrap();
    approval.confirm().await.unwrap();
    drop(pending);
    assert_eq!(laptop.devices().await.unwrap().len(), 2);
    // The home is a link in progress: not a device; nothing opens or re-creates it.
    assert!(!Device::exists(&home) && Device::link_unfinished(&home));
    let e = Device::open(&home, Unlock::KeyFile, options(&clock))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::LinkUnfinished(_)), "{e}");
    assert!(e.to_string().contains("chorus link new"), "{e}");
    let e = Device::init(&home, Unlock::KeyFile, &relay.url, "x", options(&clock))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::LinkUnfinished(_)), "{e}");

    // 2. `link new` again offers the same device (its keys and its first name).
    let again = offer(&laptop, &home, "another name", &clock).await;
    assert!(again.resumed());
    assert_eq!(again.device_name(), "phone");
    let (pending, approval) = meet(&laptop, again).await;
    assert_eq!(approval.device_name(), "phone");
    let pending = pending.confirm().await.unwrap();
    approval.confirm().await.unwrap();
    let phone = pending
        .finish(options(&clock), Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(
        laptop.devices().await.unwrap().len(),
        2,
        "one phone, not two"
    );
    assert_eq!(phone.devices().await.unwrap().len(), 2);
    // Issue 11 item 6: a bundle for a device the roster already held shows up on every
    // device as a re-link, not silently.
    for d in [&laptop, &phone] {
        let listed = d.devices().await.unwrap();
        let entry = listed.iter().find(|x| x.name == "phone").unwrap();
        assert!(entry.relinked_ms.is_some(), "{listed:?}");
        let laptop_entry = listed.iter().find(|x| x.name != "phone").unwrap();
        assert_eq!(laptop_entry.relinked_ms, None);
    }
    assert!(Device::exists(&home) && !Device::link_unfinished(&home));
    assert_eq!(phone.fingerprint(), laptop.fingerprint());
    drop(phone);
    Device::open(&home, Unlock::KeyFile, options(&clock))
        .await
        .unwrap();

    // A crash between the link's commit and the removal of its mark: the next
    // `link new` finds the identity, clears the mark and stops.
    std::fs::write(home.join(chorus_client::LINK_PENDING_FILE), b"").unwrap();
    assert!(!Device::exists(&home));
    let e = LinkOffer::new(
        &home,
        Unlock::KeyFile,
        &laptop.relay_url(),
        "phone",
        &options(&clock),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, ClientError::AlreadyInitialized(_)), "{e}");
    assert!(Device::exists(&home));
    Device::open(&home, Unlock::KeyFile, options(&clock))
        .await
        .unwrap();

    // 3. Linking into a home that holds a device is refused before anything happens.
    let e = LinkOffer::new(
        &home,
        Unlock::KeyFile,
        &laptop.relay_url(),
        "phone",
        &options(&clock),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, ClientError::AlreadyInitialized(_)), "{e}");
    assert_eq!(laptop.devices().await.unwrap().len(), 2);
}

async fn state(d: &Device) -> (String, usize, usize, i64) {
    (
        serde_json::to_string(&d.contacts().await.unwrap()).unwrap(),
        d.history("bob", 100).await.unwrap().len(),
        d.devices().await.unwrap().len(),
        d.status().await.unwrap().outbox,
    )
}

#[tokio::test]
async fn forged_and_replayed_log_records_are_refused_and_change_nothing() {
    use chorus_relay_api::{HexBytes, RecordIn};
    let (relay, dir, clock, laptop) = alice().await;
    let phone = link(&laptop, dir.path(), "phone", &clock).await;
    // A contact: the state compared below includes a conversation.
    let _bob = bob_for(&laptop, dir.path(), &relay, &clock).await;
    phone.sync().await.unwrap();
    let before = state(&phone).await;

    // A record the relay (or anyone with a device token) forged: it does not open.
    let forged = RecordIn {
        epoch: 1,
        nonce: HexBytes(vec![0; 12]),
        ciphertext: HexBytes(vec![0xab; 64]),
        guard: None,
    };
    // A real record replayed under a new seq: it opens, but its event was applied.
    let page = laptop.relay().read_records(0, 256).await.unwrap();
    let old = page
        .records
        .iter()
        .find(|r| r.guard.is_none())
        .expect("an unguarded record");
    let replay = RecordIn {
        epoch: old.epoch,
        nonce: old.nonce.clone(),
        ciphertext: old.ciphertext.clone(),
        guard: None,
    };
    // Under the next epoch, which no rotation started: it does not open (it was
    // sealed for epoch 1), and the log is now at an epoch no device holds a key to.
    let other_epoch = RecordIn {
        epoch: 2,
        ..replay.clone()
    };
    // Skipping further ahead is refused by the relay itself.
    let far = RecordIn {
        epoch: 9,
        ..replay.clone()
    };
    let err = laptop.relay().append(vec![far]).await.unwrap_err();
    assert_eq!(err.code(), Some("epoch_jump"), "{err}");
    laptop
        .relay()
        .append(vec![forged, replay, other_epoch])
        .await
        .unwrap();
    let events = phone.sync().await.unwrap();
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            chorus_client::Event::Rejected { reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("does not authenticate"),
        "{}",
        reasons[0]
    );
    assert!(reasons[1].contains("replays an event"), "{}", reasons[1]);
    assert!(
        reasons[2].contains("does not authenticate"),
        "{}",
        reasons[2]
    );
    assert_eq!(state(&phone).await, before);
    // The log goes on: the phone rotated past the epoch nobody holds (the relay takes
    // nothing older now), and the laptop, refused under epoch 1, folds the rotation
    // and sends under the new key; the phone folds it.
    let page = laptop.relay().read_records(0, 256).await.unwrap();
    assert_eq!(
        page.records.last().unwrap().epoch,
        2,
        "the phone's rotation"
    );
    laptop.send("bob", "after the noise").await.unwrap();
    phone.sync().await.unwrap();
    assert_eq!(phone.history("bob", 100).await.unwrap().len(), before.1 + 1);
}

#[tokio::test]
async fn in_primary_root_only_the_primary_holds_the_root_and_the_others_still_message() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let laptop = Device::init_with(
        &dir.path().join("alice"),
        Unlock::KeyFile,
        &relay.url,
        "alice",
        "laptop",
        SecurityLevel::PrimaryRoot,
        options(&clock),
    )
    .await
    .unwrap();
    let bob = init(dir.path(), "bob", &relay, &clock).await;
    let phone = link(&laptop, dir.path(), "phone", &clock).await;
    assert!(laptop.holds_root());
    assert!(!phone.holds_root(), "the root key never left the primary");
    let status = phone.status().await.unwrap();
    assert_eq!(
        (status.security, status.holds_root),
        ("primary-root", false)
    );
    assert_eq!(phone.fingerprint(), laptop.fingerprint());

    // What needs the root is refused on the phone, before anything happens.
    let e = phone.invite().await.err().unwrap();
    assert!(matches!(e, ClientError::NotPrimary(_)), "{e}");
    assert!(e.to_string().contains("only the primary device"), "{e}");
    let tablet = offer(&laptop, &dir.path().join("tablet"), "tablet", &clock).await;
    let e = phone.approve_link(&tablet.code()).await.err().unwrap();
    assert!(matches!(e, ClientError::NotPrimary(_)), "{e}");
    assert_eq!(laptop.devices().await.unwrap().len(), 2);

    // Everything else works from the phone: it accepts bob's invitation (as the
    // identity: bob sees the laptop's safety number), sends and receives.
    let code = bob.invite().await.unwrap();
    phone.accept(&code, Some("bob")).await.unwrap();
    phone.send("bob", "from the phone").await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(
        bob.verify("alice").await.unwrap().theirs,
        laptop.fingerprint()
    );
    clock.tick();
    bob.send("alice", "hi both").await.unwrap();
    laptop.sync().await.unwrap();
    phone.sync().await.unwrap();
    assert_eq!(history(&laptop, "bob").await, history(&phone, "bob").await);
    assert_eq!(
        history(&phone, "bob").await,
        vec![
            (true, "from the phone".to_owned()),
            (false, "hi both".to_owned())
        ]
    );
    // And a stranger's first message (to the primary's prekeys) is read by the phone.
    let code = laptop.invite().await.unwrap();
    let carol = init(dir.path(), "carol", &relay, &clock).await;
    carol.accept(&code, None).await.unwrap();
    carol.send("alice", "hello alice").await.unwrap();
    phone.sync().await.unwrap();
    assert_eq!(
        history(&phone, "carol").await,
        vec![(false, "hello alice".to_owned())]
    );

    // The primary still links devices.
    let tablet = link(&laptop, dir.path(), "tablet", &clock).await;
    assert!(!tablet.holds_root());
    assert_eq!(laptop.devices().await.unwrap().len(), 3);
}

#[tokio::test]
async fn every_other_device_is_told_that_a_device_joined_and_by_which() {
    let (_relay, dir, clock, laptop) = alice().await;
    let phone = link(&laptop, dir.path(), "phone", &clock).await;
    // The phone (linked before the tablet) hears of the tablet when it next syncs.
    let tablet = link(&laptop, dir.path(), "tablet", &clock).await;
    let told = phone.sync().await.unwrap();
    assert!(
        told.contains(&Event::DeviceLinked {
            name: "tablet".into(),
            by: "first device".into()
        }),
        "{told:?}"
    );
    // Told once: a second sync is quiet, and the new device is not told of itself.
    assert!(phone.sync().await.unwrap().is_empty());
    assert!(
        !tablet
            .sync()
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::DeviceLinked { name, .. } if name == "tablet"))
    );
    // `devices` is current without a sync first: a device linked from the tablet
    // shows up on the phone's list straight away.
    let _desk = link(&tablet, dir.path(), "desk", &clock).await;
    let names = device_names(&phone).await;
    assert!(names.contains(&"desk".to_owned()), "{names:?}");
}
