//! `leader` and `primary` on real devices, a real relay and real stores: a lease that
//! ran out is taken over and what was handed to the old holder is sent once; a
//! primary's siblings read only what it logs, and a crash between its decrypting and
//! its logging loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;

use chorus_core::{LEASE_MS, Strategy};

use crate::testing::{device, history_texts, relay, sibling, talking_to_bob, texts};
use crate::{Clock, Device, Options, SystemClock};

/// A device whose clock runs `0` ms ahead: a lease taken now has run out for it.
struct Ahead(i64);

impl Clock for Ahead {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.0
    }
}

/// Alice talking to bob (on a relay in this process), and alice's phone linked after.
async fn alice_phone_and_bob(dir: &Path) -> (Device, Device, Device) {
    let url = relay(dir).await;
    let alice = device(dir, &url, "alice").await;
    let bob = talking_to_bob(&alice, dir, &url).await;
    let phone = sibling(&alice, dir, "phone", Options::default()).await;
    (alice, bob, phone)
}

#[tokio::test]
async fn a_lease_that_ran_out_is_taken_over_and_what_the_old_holder_was_handed_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, phone) = alice_phone_and_bob(dir.path()).await;
    let later = Options {
        clock: Arc::new(Ahead(i64::try_from(LEASE_MS).unwrap() + 1_000)),
        ..Options::default()
    };
    let laptop = sibling(&alice, dir.path(), "laptop", later).await;
    alice.set_strategy(Strategy::Leader).await.unwrap();

    // The first to send takes the lease; the phone hands its message to the holder.
    assert_eq!(
        alice
            .send("bob", "from the holder")
            .await
            .unwrap()
            .forwarded_to,
        None
    );
    phone.sync().await.unwrap();
    let handed = phone.send("bob", "handed over").await.unwrap();
    assert!(handed.forwarded_to.is_some(), "the phone encrypted");
    assert_eq!(phone.sending_device().await.unwrap(), handed.forwarded_to);

    // The holder goes quiet. For the laptop the lease has run out: it takes it over
    // and sends what the holder was handed, then its own.
    laptop.sync().await.unwrap();
    let own = laptop.send("bob", "after the takeover").await.unwrap();
    assert_eq!(own.forwarded_to, None);
    assert!(own.queued.is_none());
    let got = texts(&bob.sync().await.unwrap());
    assert_eq!(
        got,
        ["from the holder", "handed over", "after the takeover"]
    );

    // The others fold the takeover: from now on they hand their messages to the laptop,
    // the old holder included, and nobody sends "handed over" again.
    for d in [&alice, &phone] {
        d.sync().await.unwrap();
        let o = d.send("bob", "to the new holder").await.unwrap();
        assert_eq!(o.forwarded_to.as_deref(), Some("laptop"));
    }
    laptop.sync().await.unwrap();
    let got = texts(&bob.sync().await.unwrap());
    assert_eq!(got, ["to the new holder", "to the new holder"]);
    for d in [&alice, &phone, &laptop] {
        d.sync().await.unwrap();
        let history = history_texts(d, "bob", 100).await;
        assert_eq!(
            history.iter().filter(|t| *t == "handed over").count(),
            1,
            "{history:?}"
        );
    }
}

#[tokio::test]
async fn a_primary_crashed_before_its_fan_out_logs_what_it_read_on_its_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, phone) = alice_phone_and_bob(dir.path()).await;
    alice.set_strategy(Strategy::Primary).await.unwrap();
    phone.sync().await.unwrap();

    bob.send("alice", "for the primary").await.unwrap();
    // The phone does not read bob's mailbox: nothing until the primary logs it.
    assert!(texts(&phone.sync().await.unwrap()).is_empty());
    // The primary reads it, and crashes before logging it for its siblings.
    assert_eq!(
        texts(&alice.read_mailboxes().await.unwrap()),
        ["for the primary"]
    );
    assert!(texts(&phone.sync().await.unwrap()).is_empty());
    // Back, its next sync logs it; the phone shows it once.
    assert!(texts(&alice.sync().await.unwrap()).is_empty());
    assert_eq!(texts(&phone.sync().await.unwrap()), ["for the primary"]);
    alice.sync().await.unwrap();
    assert!(texts(&phone.sync().await.unwrap()).is_empty());
}

#[tokio::test]
async fn a_primarys_sibling_watching_takes_no_pushed_envelope_and_shows_what_the_primary_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, phone) = alice_phone_and_bob(dir.path()).await;
    let phone = Arc::new(phone);
    alice.set_strategy(Strategy::Primary).await.unwrap();
    phone.sync().await.unwrap();
    let contact_cursor = |s: crate::Status| {
        s.mailboxes
            .into_iter()
            .find(|m| m.kind == "contact")
            .map(|m| m.after_seq)
    };
    let before = contact_cursor(phone.status().await.unwrap());
    let watcher = {
        let phone = phone.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            phone
                .watch(
                    |e| {
                        if let crate::Event::Message(m) = e {
                            got.push(m.text.clone());
                        }
                        got.is_empty()
                    },
                    |link| {
                        if let Err(e) = link {
                            panic!("watch error: {e}");
                        }
                    },
                )
                .await
                .unwrap();
            got
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    bob.send("alice", "pushed to every device").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // Pushed or not, the phone took nothing from bob's mailbox.
    assert!(
        !watcher.is_finished(),
        "the phone read bob's mailbox itself"
    );
    assert_eq!(contact_cursor(phone.status().await.unwrap()), before);
    // The primary reads and logs it; the phone's watch shows it from the log.
    alice.sync().await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, ["pushed to every device"]);
}

/// `per-device`: once the relay holds a list naming every device of the roster, a sync
/// asks it nothing more about the list or the bundles (before, every sync checked each
/// device's bundle and put the list again); a device linked since makes it publish
/// again, and the new list names both.
#[tokio::test]
async fn per_device_publishes_once_per_roster_and_again_when_a_device_joins() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let alice = device(dir.path(), &url, "alice").await;
    alice.set_strategy(Strategy::PerDevice).await.unwrap();
    let before = alice.relay.requests();
    alice.publish_per_device().await.unwrap();
    assert_eq!(alice.relay.requests(), before, "nothing left to publish");
    let phone = sibling(&alice, dir.path(), "phone", Options::default()).await;
    phone.sync().await.unwrap();
    let before = alice.relay.requests();
    alice.sync_log().await.unwrap();
    alice.publish_per_device().await.unwrap();
    assert!(
        alice.relay.requests() > before,
        "a new device: publish again"
    );
    let log_id = alice.log.keys.log_id;
    let full = alice
        .log
        .with_state(|s| chorus_core::per_device::own_list(s.roster(), &log_id.0, |_| true))
        .await
        .unwrap();
    assert_eq!(full.devices.len(), 2);
    assert_eq!(
        alice.store.listed_serial().await.unwrap(),
        Some(full.serial)
    );
}
