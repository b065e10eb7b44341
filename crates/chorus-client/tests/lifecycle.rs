#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A device's life after linking, against a real relay (loopback axum app, SQLite file):
//! revoking a lost device.

use chorus_client::link::link_locally;
use std::collections::HashSet;

use chorus_client::{ClientError, Event, RelayError, Unlock};
use chorus_relay_api::Id32;

mod common;
use common::{Relay, TestClock, device as init, device_names, link, options, texts};

fn revoked_names(events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DeviceRevoked {
                name, this_device, ..
            } => Some((name.clone(), *this_device)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_revoked_device_is_shut_out_by_the_relay_and_the_others_carry_on() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let laptop = init(dir.path(), "alice", &relay, &clock).await;
    let phone = link(&laptop, dir.path(), "phone", &clock).await;
    let tablet = link(&laptop, dir.path(), "tablet", &clock).await;
    let bob = init(dir.path(), "bob", &relay, &clock).await;
    bob.accept(&laptop.invite().await.unwrap(), None)
        .await
        .unwrap();
    laptop.sync().await.unwrap();

    // The device is named as the user would: its name ignoring case, or its id.
    let found = laptop.find_device("TABLET").await.unwrap();
    assert_eq!((found.name.as_str(), found.revoked), ("tablet", false));
    assert!(!found.this_device);
    assert_eq!(
        laptop.find_device(&found.id[..6]).await.unwrap().name,
        "tablet"
    );
    assert!(matches!(
        laptop.find_device("watch").await,
        Err(ClientError::UnknownDevice(_))
    ));
    // A whole id names that key only: a device linked under a name that spells the
    // tablet's id is never what that id resolves to (the CLI revokes by the whole id
    // of the device its confirmation named).
    let _impostor = link(&laptop, dir.path(), &found.id, &clock).await;
    laptop.sync_log().await.unwrap();
    assert_eq!(laptop.find_device(&found.id).await.unwrap().name, "tablet");
    // A device cannot revoke itself, and trying changes nothing.
    let own = laptop
        .devices()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.this_device)
        .unwrap();
    assert!(matches!(
        laptop.revoke_device(&own.id).await,
        Err(ClientError::RevokeThisDevice)
    ));
    assert_eq!(laptop.devices().await.unwrap().len(), 4);

    let revoked = laptop.revoke_device(&found.id).await.unwrap();
    assert_eq!((revoked.name.as_str(), revoked.already), ("tablet", false));
    assert_eq!(revoked.id, found.id[..16]);

    // Every remaining device hears of it from the log, and lists two devices.
    let heard = revoked_names(&phone.sync_log().await.unwrap());
    assert_eq!(heard, [("tablet".to_owned(), false)]);
    for d in [&laptop, &phone] {
        let names = device_names(d).await;
        assert!(!names.contains(&"tablet".to_owned()), "{names:?}");
        assert_eq!(names.len(), 3);
    }
    assert!(laptop.find_device("tablet").await.unwrap().revoked);

    // The relay no longer lets the tablet in: it cannot read, append or send, and it
    // is told why.
    let err = tablet.sync().await.unwrap_err();
    assert!(
        matches!(err, ClientError::Relay(RelayError::NotRegistered { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("removed"), "{err}");
    let err = tablet.send("bob", "from a lost tablet").await;
    assert!(
        matches!(&err, Ok(o) if o.queued.is_some()) || err.is_err(),
        "a revoked device's send reaches nobody"
    );

    // The tablet's store holds every private prekey minted before the revocation (they
    // are escrowed in the log). The directory now hands out only new ones, escrowed
    // under the new epoch key: a stranger's first message is one the tablet cannot
    // open, even handed the relay's copy of it (and of the log: `epoch_tests.rs`).
    let seen: HashSet<(Id32, i64)> = relay
        .envelopes()
        .await
        .into_iter()
        .map(|(m, e)| (m, e.seq))
        .collect();
    let carol = init(dir.path(), "carol", &relay, &clock).await;
    carol
        .add_contact(&laptop.address(), Some("alice"))
        .await
        .unwrap();
    let (intro, first) = relay
        .envelopes()
        .await
        .into_iter()
        .find(|(m, e)| !seen.contains(&(*m, e.seq)))
        .unwrap();
    let taken = tablet.process(intro, &first).await.unwrap();
    assert!(
        !taken.iter().any(|e| matches!(e, Event::Request { .. })),
        "the revoked tablet opened a first message: {taken:?}"
    );
    assert!(taken.iter().any(|e| matches!(e, Event::Rejected { .. })));
    let requests = laptop.sync().await.unwrap();
    assert!(
        requests.iter().any(|e| matches!(e, Event::Request { .. })),
        "the laptop takes it: {requests:?}"
    );

    // Running it again only shows the relay the proof again.
    assert!(laptop.revoke_device("tablet").await.unwrap().already);

    // The others carry on: the phone sends, bob reads it; bob answers, both read it.
    phone.send("bob", "after the tablet").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["after the tablet"]);
    bob.send("alice", "still one alice").await.unwrap();
    for d in [&laptop, &phone] {
        assert!(
            texts(&d.sync().await.unwrap()).contains(&"still one alice".to_owned()),
            "every remaining device reads bob"
        );
    }
    // Whatever the tablet tried never arrived anywhere.
    for d in [&laptop, &phone] {
        let history = d.history("bob", 100).await.unwrap();
        assert!(history.iter().all(|m| m.text != "from a lost tablet"));
    }
}

fn messages(events: &[Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some((m.text.clone(), m.read)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_message_read_on_one_device_reaches_the_others_as_already_read() {
    let (_relay, _dir, clock, [laptop, phone, bob]) = alice_on_two_devices_and_bob().await;

    clock.tick();
    bob.send("alice", "read on the laptop").await.unwrap();
    assert_eq!(
        messages(&laptop.sync().await.unwrap()),
        [("read on the laptop".to_owned(), false)],
        "new where it is read first"
    );
    laptop.mark_read("bob").await.unwrap();
    clock.tick();
    bob.send("alice", "not read anywhere").await.unwrap();
    // The phone, catching up, folds the read marker before reading its mailbox: the
    // first is shown as already read, the second as new.
    assert_eq!(
        messages(&phone.sync().await.unwrap()),
        [
            ("read on the laptop".to_owned(), true),
            ("not read anywhere".to_owned(), false)
        ]
    );
    let history: Vec<(String, bool)> = phone
        .history("bob", 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.outgoing)
        .map(|m| (m.text, m.read))
        .collect();
    assert_eq!(
        history,
        [
            ("read on the laptop".to_owned(), true),
            ("not read anywhere".to_owned(), false)
        ]
    );
}

#[tokio::test]
async fn a_device_running_watch_keeps_telling_its_siblings_it_is_online() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let laptop = init(dir.path(), "alice", &relay, &clock).await;
    let phone = link_locally(
        &laptop,
        &dir.path().join("phone"),
        "phone",
        Unlock::KeyFile,
        chorus_client::Options {
            heartbeat: std::time::Duration::from_millis(50),
            ..options(&clock)
        },
    )
    .await
    .unwrap()
    .0;
    let watching = tokio::spawn(async move { phone.watch(|_| true, |_| {}).await });
    // Seen by the relay (the presence clock is the relay's), and seen again later
    // without the phone doing anything but watch.
    let seen = || async {
        laptop
            .devices()
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.name == "phone")
            .and_then(|d| d.last_seen_ms)
    };
    let mut first = None;
    let mut later = None;
    for _ in 0..200 {
        match (first, seen().await) {
            (None, Some(at)) => first = Some(at),
            (Some(f), Some(at)) if at > f => {
                later = Some(at);
                break;
            }
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    watching.abort();
    assert!(first.is_some(), "the phone was never seen online");
    assert!(later.is_some(), "watch did not keep the phone online");

    // The relay forgets presence (a restart loses it: it is never written down); the
    // laptop still knows when it last saw the phone online.
    let (addr, data) = relay.stop().await;
    let _relay = Relay::start_at(addr, data).await;
    let devices = laptop.devices().await.unwrap();
    let phone = devices.iter().find(|d| d.name == "phone").unwrap();
    assert!(!phone.online);
    assert!(
        phone.last_seen_ms >= later,
        "{:?} < {later:?}",
        phone.last_seen_ms
    );
    let this = devices.iter().find(|d| d.this_device).unwrap();
    assert!(this.online, "a device is online while it asks");
}

/// `d`'s conversation with bob, texts in order.
async fn history(d: &chorus_client::Device) -> Vec<String> {
    d.history("bob", 500)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// Alice's laptop and phone, both caught up, and bob, her contact (the relay and the
/// directory must outlive the devices).
async fn alice_on_two_devices_and_bob() -> (
    Relay,
    tempfile::TempDir,
    TestClock,
    [chorus_client::Device; 3],
) {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let laptop = init(dir.path(), "alice", &relay, &clock).await;
    let phone = link(&laptop, dir.path(), "phone", &clock).await;
    let bob = init(dir.path(), "bob", &relay, &clock).await;
    bob.accept(&laptop.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    laptop.sync().await.unwrap();
    phone.sync().await.unwrap();
    (relay, dir, clock, [laptop, phone, bob])
}

/// The records the relay still stores for `d`'s log and their bytes.
async fn stored(d: &chorus_client::Device) -> (usize, usize) {
    let records = d.relay().read_all_records().await.unwrap();
    let bytes = records.iter().map(|r| r.ciphertext.0.len()).sum();
    (records.len(), bytes)
}

#[tokio::test]
async fn compaction_trims_what_every_device_folded_and_a_late_or_new_device_converges() {
    let (_relay, dir, clock, [laptop, phone, bob]) = alice_on_two_devices_and_bob().await;

    // The phone goes away; the laptop talks on.
    for i in 0..40 {
        clock.tick();
        laptop.send("bob", &format!("m{i}")).await.unwrap();
    }
    bob.sync().await.unwrap();
    bob.send("alice", "answer").await.unwrap();
    laptop.sync().await.unwrap();
    let (before, _) = stored(&laptop).await;

    // Nothing the phone has not folded goes: compaction stops at its cursor.
    let first = laptop.compact_log().await.unwrap();
    let (kept, _) = stored(&laptop).await;
    assert!(
        kept >= 40,
        "the phone's share of the log stays: {kept} of {before}"
    );
    // The phone comes back across it and converges.
    phone.sync().await.unwrap();
    assert_eq!(history(&phone).await, history(&laptop).await);
    assert_eq!(history(&phone).await.len(), 41);

    // Now every device folded it all: the log shrinks to what came after.
    let later = laptop.compact_log().await.unwrap();
    assert!(later > first, "{later} > {first}");
    let (after, bytes) = stored(&laptop).await;
    assert!(
        after <= 3,
        "{after} records ({bytes} bytes) left of {before}"
    );

    // A device linked after the compaction starts from a checkpoint and talks; the
    // others fold what it does.
    let tablet = link(&laptop, dir.path(), "tablet", &clock).await;
    tablet.send("bob", "from the tablet").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["from the tablet"]);
    phone.sync().await.unwrap();
    assert_eq!(history(&phone).await.last().unwrap(), "from the tablet");
}

/// The highest epoch among the records the relay stores for `d`'s log.
async fn log_epoch(d: &chorus_client::Device) -> i64 {
    let records = d.relay().read_all_records().await.unwrap();
    records.iter().map(|r| r.epoch).max().unwrap_or(0)
}

#[tokio::test]
async fn a_week_into_an_epoch_the_next_sync_rotates_the_key_and_everyone_follows() {
    let (_relay, _dir, clock, [laptop, phone, bob]) = alice_on_two_devices_and_bob().await;
    assert_eq!(log_epoch(&laptop).await, 1);

    clock.advance_days(6);
    laptop.sync().await.unwrap();
    assert_eq!(log_epoch(&laptop).await, 1, "not a week yet");
    clock.advance_days(2);
    laptop.sync().await.unwrap();
    assert_eq!(log_epoch(&laptop).await, 2, "a week on, the key rotated");
    // Once: the next sync finds the new epoch young.
    laptop.sync().await.unwrap();
    phone.sync().await.unwrap();
    assert_eq!(log_epoch(&laptop).await, 2);

    phone.send("bob", "a week later").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["a week later"]);
    bob.send("alice", "still here").await.unwrap();
    for d in [&laptop, &phone] {
        assert!(texts(&d.sync().await.unwrap()).contains(&"still here".to_owned()));
    }
}

/// The texts of `d`'s history with `contact`, marked by direction.
async fn transcript(d: &chorus_client::Device, contact: &str) -> Vec<String> {
    d.history(contact, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| format!("{}{}", if m.outgoing { "> " } else { "< " }, m.text))
        .collect()
}

#[tokio::test]
async fn sixty_days_in_a_drawer_the_tablet_misses_nothing_and_sends_at_once() {
    // Mailboxes keep envelopes for one (real) second here, not 30 days: every sweep
    // below runs long past every envelope's TTL.
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tempfile::tempdir().unwrap(),
        |a| a.mailbox_ttl_secs = 1,
    )
    .await;
    let clock = TestClock::default();
    let laptop = init(dir.path(), "alice", &relay, &clock).await;
    let tablet = link(&laptop, dir.path(), "tablet", &clock).await;
    let bob = init(dir.path(), "bob", &relay, &clock).await;
    bob.accept(&laptop.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    laptop.sync().await.unwrap();
    tablet.sync().await.unwrap();

    // The tablet goes into a drawer for 60 days; the laptop and Bob talk every day,
    // and the relay sweeps expired envelopes every day.
    for day in 0..60 {
        clock.advance_days(1);
        laptop
            .send("bob", &format!("day {day}: alice"))
            .await
            .unwrap();
        bob.sync().await.unwrap();
        clock.tick();
        bob.send("alice", &format!("day {day}: bob")).await.unwrap();
        clock.tick();
        bob.send("alice", &format!("day {day}: bob again"))
            .await
            .unwrap();
        laptop.sync().await.unwrap();
        if day % 20 == 19 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            relay.sweep().await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    relay.sweep().await;
    let waiting = relay.envelopes().await.len();
    assert!(
        waiting >= 120,
        "Bob's messages wait for the tablet past their TTL ({waiting} stored)"
    );

    // Back from the drawer: every message, in the laptop's order, and it sends at once.
    tablet.sync().await.unwrap();
    let expected = transcript(&laptop, "bob").await;
    assert_eq!(expected.len(), 60 * 3);
    assert_eq!(transcript(&tablet, "bob").await, expected);
    tablet.send("bob", "back from the drawer").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["back from the drawer"]);
    laptop.sync().await.unwrap();
    assert_eq!(
        transcript(&tablet, "bob").await,
        transcript(&laptop, "bob").await
    );

    // Everyone has read everything (and said so with its next read): the sweep keeps
    // nothing more.
    for d in [&laptop, &tablet, &bob] {
        d.sync().await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    relay.sweep().await;
    let left: Vec<_> = relay
        .envelopes()
        .await
        .into_iter()
        .map(|(m, e)| (m, e.seq))
        .collect();
    assert_eq!(left, [], "envelopes kept after every device read them");
}

#[tokio::test]
async fn a_device_that_only_watches_still_lets_the_relay_sweep_what_it_read() {
    // A device following pushes reads no mailbox page, yet the relay sweeps an expired
    // envelope only once every device has read past it: `watch` must say how far it
    // got, or its identity's mailboxes keep everything until the quota is full.
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tempfile::tempdir().unwrap(),
        |a| a.mailbox_ttl_secs = 1,
    )
    .await;
    let clock = TestClock::default();
    let laptop = init(dir.path(), "alice", &relay, &clock).await;
    let tablet = link_locally(
        &laptop,
        &dir.path().join("tablet"),
        "tablet",
        Unlock::KeyFile,
        chorus_client::Options {
            heartbeat: std::time::Duration::from_millis(50),
            ..options(&clock)
        },
    )
    .await
    .unwrap()
    .0;
    let bob = init(dir.path(), "bob", &relay, &clock).await;
    bob.accept(&laptop.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    laptop.sync().await.unwrap();
    tablet.sync().await.unwrap();
    laptop.send("bob", "hello").await.unwrap();
    bob.sync().await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watching = tokio::spawn(async move {
        tablet
            .watch(
                move |e| {
                    if let Event::Message(m) = e {
                        let _ = tx.send(m.text.clone());
                    }
                    true
                },
                |_| {},
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    bob.send("alice", "while the tablet watches").await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let text = rx.recv().await.unwrap();
            if text == "while the tablet watches" {
                break text;
            }
        }
    })
    .await
    .expect("the watching tablet was pushed bob's message");
    assert_eq!(got, "while the tablet watches");
    // The others read everything (and say so with their next read); the tablet only
    // watches. Past every TTL, the sweep keeps nothing.
    for _ in 0..2 {
        for d in [&laptop, &bob] {
            d.sync().await.unwrap();
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    relay.sweep().await;
    watching.abort();
    let left: Vec<_> = relay
        .envelopes()
        .await
        .into_iter()
        .map(|(m, e)| (m, e.seq))
        .collect();
    assert_eq!(left, [], "envelopes kept for a device that read them");
}
