#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Devices against a real relay: the relay's axum app on a loopback port with a real
//! SQLite file, driven over HTTP and WebSocket by the client, with real device stores.
//! Grouped by hazard: the happy paths, the prekey lifecycle, bad input (each leaves
//! the store unchanged), and relay outages (the outbox).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chorus_client::prekeys::{ONE_TIME_BATCH, REPLENISH_BELOW};
use chorus_client::relay::RelayClient;
use chorus_client::{Backoff, ClientError, Device, Event, RelayError, StoreError, Unlock};
use chorus_relay_api::{Id16, Id32};

mod common;
use common::{Relay, TestClock, device, options, texts};

/// alice invites bob; bob accepts; alice learns of him. Returns (alice, bob).
async fn pair(dir: &Path, relay: &Relay, clock: &TestClock) -> (Device, Device) {
    let alice = device(dir, "alice", relay, clock).await;
    let bob = device(dir, "bob", relay, clock).await;
    let code = alice.invite().await.unwrap();
    let (alias, outcome) = bob.accept(&code, None).await.unwrap();
    assert_eq!(alias, "alice");
    assert!(outcome.queued.is_none());
    let events = alice.sync().await.unwrap();
    assert_eq!(
        events,
        vec![Event::ContactAdded {
            contact: "bob".into()
        }]
    );
    (alice, bob)
}

/// Everything a command could change, to compare before and after a refusal.
async fn snapshot(d: &Device) -> (String, i64, usize) {
    let contacts = serde_json::to_string(&d.contacts().await.unwrap()).unwrap();
    let status = d.status().await.unwrap();
    let mut history = 0;
    for c in d.contacts().await.unwrap() {
        history += d.history(&c.name, 1000).await.unwrap().len();
    }
    (contacts, status.outbox, history)
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn invitation_then_messages_both_ways_in_order() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;

    bob.send("alice", "one").await.unwrap();
    bob.send("alice", "two").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["one", "two"]);
    alice.send("bob", "three").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["three"]);
    // Both sides now know the other has their hello.
    assert!(alice.contacts().await.unwrap()[0].connected);
    assert!(bob.contacts().await.unwrap()[0].connected);
    // A second sync finds nothing new: every envelope is processed exactly once.
    assert!(alice.sync().await.unwrap().is_empty());
    assert!(bob.sync().await.unwrap().is_empty());

    let history: Vec<(bool, String)> = alice
        .history("bob", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.outgoing, m.text))
        .collect();
    assert_eq!(
        history,
        [
            (false, "one".to_owned()),
            (false, "two".to_owned()),
            (true, "three".to_owned())
        ]
    );
    assert_eq!(alice.history("bob", 1).await.unwrap()[0].text, "three");
    let (va, vb) = (
        alice.verify("bob").await.unwrap(),
        bob.verify("alice").await.unwrap(),
    );
    assert_eq!(va.safety_number.to_string(), vb.safety_number.to_string());
    assert_eq!(va.theirs, bob.fingerprint());
}

#[tokio::test]
async fn a_send_to_a_contact_on_our_relay_is_one_request_and_never_enters_an_outbox() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    bob.send("alice", "hello").await.unwrap();
    alice.sync().await.unwrap();
    alice.send("bob", "first").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["first"]);

    let (requests, commits) = (alice.relay().requests(), alice.local_commits());
    let outcome = alice.send("bob", "second").await.unwrap();
    assert!(outcome.queued.is_none());
    assert_eq!(
        alice.relay().requests() - requests,
        1,
        "the record and the envelope travel as one request"
    );
    assert_eq!(
        alice.local_commits() - commits,
        2,
        "the pending send, then the fold of its record"
    );
    assert_eq!(alice.status().await.unwrap().outbox, 0);
    assert_eq!(texts(&bob.sync().await.unwrap()), ["second"]);
    assert!(
        history_texts(&alice, "bob")
            .await
            .contains(&"second".to_owned())
    );
}

#[tokio::test]
async fn a_bundled_send_the_relay_refuses_is_logged_and_waits_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tempfile::tempdir().unwrap(),
        |args| args.mailbox_depth = 2,
    )
    .await;
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    bob.send("alice", "hello").await.unwrap();
    alice.sync().await.unwrap();
    // Bob's mailbox holds two envelopes: the bundle that finds it full is refused
    // whole, and the same record and envelope go the unbundled way.
    let mut delivered = Vec::new();
    let (refused, queued) = loop {
        let text = format!("m{}", delivered.len());
        match alice.send("bob", &text).await.unwrap().queued {
            Some(e) => break (text, e),
            None => delivered.push(text),
        }
        assert!(delivered.len() <= 2, "the mailbox never filled up");
    };
    assert_eq!(queued.code(), Some("mailbox_full"), "{queued}");
    assert_eq!(alice.status().await.unwrap().outbox, 1);
    let logged = |texts: Vec<String>| texts.iter().filter(|t| **t == refused).count();
    assert_eq!(logged(history_texts(&alice, "bob").await), 1);
    // Flushing again neither loses it nor logs it twice.
    alice.sync().await.unwrap();
    assert_eq!(alice.status().await.unwrap().outbox, 1);
    assert_eq!(logged(history_texts(&alice, "bob").await), 1);
    assert_eq!(texts(&bob.sync().await.unwrap()), delivered);
}

#[tokio::test]
async fn a_contact_added_by_address_consumes_one_directory_prekey() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let alice = device(dir.path(), "alice", &relay, &clock).await;
    let carol = device(dir.path(), "carol", &relay, &clock).await;
    let before = alice.status().await.unwrap();
    assert_eq!(before.directory_one_time, Some(ONE_TIME_BATCH as i64));

    let (alias, _) = carol
        .add_contact(&alice.address(), Some("al"))
        .await
        .unwrap();
    assert_eq!(alias, "al");
    let after = alice.status().await.unwrap();
    assert_eq!(after.directory_one_time, Some(ONE_TIME_BATCH as i64 - 1));

    carol.send("al", "found you").await.unwrap();
    // A stranger's first messages are a request until alice accepts.
    let events = alice.sync().await.unwrap();
    assert!(matches!(&events[0], Event::Request { name, .. } if name == "carol"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Request { text, .. } if text == "found you"))
    );
    let id = alice.requests().await.unwrap().pending[0].id;
    assert_eq!(alice.accept_request(id, None).await.unwrap(), "carol");
    assert_eq!(
        alice.history("carol", 10).await.unwrap()[0].text,
        "found you"
    );
    // The private halves of the consumed one-time keys are gone.
    let held = alice.status().await.unwrap().prekeys;
    assert_eq!(held.one_time, before.prekeys.one_time - 1);
    assert_eq!(held.pq, before.prekeys.pq - 1);
    alice.send("carol", "hi carol").await.unwrap();
    assert_eq!(texts(&carol.sync().await.unwrap()), ["hi carol"]);
}

#[tokio::test]
async fn watch_delivers_pushed_messages_live() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    let bob = Arc::new(bob);
    let watcher = {
        let bob = bob.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            bob.watch(
                |e| {
                    if let Event::Message(m) = e {
                        got.push(m.text.clone());
                    }
                    got.len() < 3
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    for t in ["a", "b", "c"] {
        alice.send("bob", t).await.unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(20), watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, ["a", "b", "c"]);
}

// ---------------------------------------------------------------- prekey lifecycle

#[tokio::test]
async fn one_time_prekeys_are_replenished_below_the_threshold() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let alice = device(dir.path(), "alice", &relay, &clock).await;
    let address = Id32(sha_address(&alice));
    let public = RelayClient::new(&relay.url, Backoff::COMMAND).unwrap();
    let drain = ONE_TIME_BATCH as i64 - REPLENISH_BELOW + 1;
    for _ in 0..drain {
        public.fetch_prekeys(address).await.unwrap();
    }
    assert_eq!(
        alice.status().await.unwrap().directory_one_time,
        Some(REPLENISH_BELOW - 1)
    );
    alice.maintain_prekeys().await.unwrap();
    assert_eq!(
        alice.status().await.unwrap().directory_one_time,
        Some(REPLENISH_BELOW - 1 + ONE_TIME_BATCH as i64)
    );
    // Above the threshold nothing more is published.
    alice.maintain_prekeys().await.unwrap();
    assert_eq!(
        alice.status().await.unwrap().directory_one_time,
        Some(REPLENISH_BELOW - 1 + ONE_TIME_BATCH as i64)
    );
}

/// The directory address, as `docs/relay-api.md` and the client derive it.
fn sha_address(d: &Device) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(b"chorus-directory-address-v1\0")
        .chain_update(d.fingerprint().digits().as_bytes())
        .finalize()
        .into()
}

#[tokio::test]
async fn a_rotated_signed_prekey_still_answers_within_the_grace_period_then_is_deleted() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let alice = device(dir.path(), "alice", &relay, &clock).await;
    let dave = device(dir.path(), "dave", &relay, &clock).await;
    // The code carries alice's current signed prekey; she rotates before dave answers.
    let code = alice.invite().await.unwrap();
    assert_eq!(alice.status().await.unwrap().prekeys.signed, 1);
    clock.advance_days(8);
    alice.maintain_prekeys().await.unwrap();
    assert_eq!(
        alice.status().await.unwrap().prekeys.signed,
        2,
        "old key kept"
    );

    dave.accept(&code, None).await.unwrap();
    dave.send("alice", "late answer").await.unwrap();
    let events = alice.sync().await.unwrap();
    assert_eq!(texts(&events), ["late answer"]);

    clock.advance_days(40);
    alice.maintain_prekeys().await.unwrap();
    let held = alice.status().await.unwrap().prekeys;
    // Day 48: the day-8 key is rotated out too (a new one is current); the key replaced
    // on day 8 is past its 35-day grace and deleted. Kept: day-8 key, day-48 key.
    assert_eq!(held.signed, 2, "without the purge there would be 3");
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn refused_input_changes_nothing() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    // Bob reads alice's answer: a contact that never answered would be replaced by
    // a new introduction, not refused.
    bob.sync().await.unwrap();
    let code = alice.invite().await.unwrap();
    let carol = device(dir.path(), "carol", &relay, &clock).await;
    carol.accept(&code, Some("alice-2")).await.unwrap();
    let before = (snapshot(&alice).await, snapshot(&carol).await);

    // The same code accepted twice.
    let err = carol.accept(&code, None).await.unwrap_err();
    assert!(
        matches!(err, ClientError::AlreadyAccepted { ref contact } if contact == "alice-2"),
        "{err}"
    );
    // Truncated and tampered codes.
    let truncated = &code[..code.len() / 2];
    assert!(matches!(
        carol.accept(truncated, None).await,
        Err(ClientError::BadCode { .. })
    ));
    let mut tampered = code.clone().into_bytes();
    let i = tampered.len() - 40;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    assert!(matches!(
        carol
            .accept(std::str::from_utf8(&tampered).unwrap(), None)
            .await,
        Err(ClientError::BadCode { .. })
    ));
    assert!(matches!(
        carol.accept("not a code", None).await,
        Err(ClientError::BadCode { .. })
    ));
    // An oversized message, an empty one, an unknown contact.
    let big = "x".repeat(chorus_wire::limits::MAX_TEXT_LEN + 1);
    assert!(matches!(
        alice.send("bob", &big).await,
        Err(ClientError::Wire(chorus_wire::WireError::TooLarge { .. }))
    ));
    assert!(matches!(
        alice.send("bob", "").await,
        Err(ClientError::EmptyMessage)
    ));
    assert!(matches!(
        alice.send("nobody", "hi").await,
        Err(ClientError::UnknownContact(_))
    ));
    assert!(matches!(
        alice.history("nobody", 5).await,
        Err(ClientError::UnknownContact(_))
    ));
    // Bad addresses, and our own.
    for bad in [
        "",
        "123@http://x",
        "nodigits",
        &format!("{}@ftp://x", "1".repeat(30)),
    ] {
        assert!(
            matches!(
                alice.add_contact(bad, None).await,
                Err(ClientError::BadAddress { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        alice.add_contact(&alice.address(), None).await,
        Err(ClientError::OwnIdentity)
    ));
    assert!(matches!(
        bob.add_contact(&alice.address(), None).await,
        Err(ClientError::AlreadyContact { .. })
    ));
    assert_eq!((snapshot(&alice).await, snapshot(&carol).await), before);
}

#[tokio::test]
async fn a_forged_or_replayed_envelope_is_skipped_and_the_session_survives() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    bob.sync().await.unwrap(); // learns the mailbox alice made for him
    bob.send("alice", "genuine").await.unwrap();
    // Anyone holding the mailbox id can post: capture bob's last envelope from the
    // relay and replay it under a new envelope id, then post garbage.
    let status = alice.status().await.unwrap();
    assert!(
        status
            .mailboxes
            .iter()
            .any(|m| m.contact.as_deref() == Some("bob"))
    );
    assert_eq!(texts(&alice.sync().await.unwrap()), ["genuine"]);
    let mailbox = recv_mailbox_of(&alice, "bob").await;
    let public = RelayClient::new(&relay.url, Backoff::COMMAND).unwrap();
    let page = relay_read(&alice, mailbox).await;
    let replay = page.last().unwrap().payload.0.clone();
    public
        .post_envelope(mailbox, Id16([1; 16]), replay)
        .await
        .unwrap();
    public
        .post_envelope(mailbox, Id16([2; 16]), vec![0xff; 100])
        .await
        .unwrap();
    let before = snapshot(&alice).await;
    let events = alice.sync().await.unwrap();
    // The garbage is reported; the replay is a duplicate, skipped silently (a sibling's
    // first message turned into a contact looks the same). Neither changes anything.
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events.iter().all(|e| matches!(e, Event::Rejected { .. })));
    assert_eq!(snapshot(&alice).await, before);
    bob.send("alice", "still works").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["still works"]);
}

/// A backlog is received a page per transaction, in memory between envelopes; an
/// envelope that path does not take (here a replay and garbage in the middle) goes
/// through the one-at-a-time path, and the batch resumes after it: every genuine
/// message arrives once, in order, the garbage is reported once, and a second sync
/// finds nothing.
#[tokio::test]
async fn a_backlog_with_garbage_in_the_middle_arrives_whole_in_one_sync() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    bob.sync().await.unwrap();
    bob.send("alice", "first").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["first"]);
    for i in 0..5 {
        bob.send("alice", &format!("before {i}")).await.unwrap();
    }
    let mailbox = recv_mailbox_of(&alice, "bob").await;
    let public = RelayClient::new(&relay.url, Backoff::COMMAND).unwrap();
    let replay = relay_read(&alice, mailbox)
        .await
        .last()
        .unwrap()
        .payload
        .0
        .clone();
    public
        .post_envelope(mailbox, Id16([1; 16]), replay)
        .await
        .unwrap();
    public
        .post_envelope(mailbox, Id16([2; 16]), vec![0xff; 100])
        .await
        .unwrap();
    for i in 0..5 {
        bob.send("alice", &format!("after {i}")).await.unwrap();
    }
    let events = alice.sync().await.unwrap();
    let expected: Vec<String> = (0..5)
        .map(|i| format!("before {i}"))
        .chain((0..5).map(|i| format!("after {i}")))
        .collect();
    assert_eq!(texts(&events), expected);
    let rejected = events
        .iter()
        .filter(|e| matches!(e, Event::Rejected { .. }))
        .count();
    assert_eq!(rejected, 1, "{events:?}");
    let history: Vec<String> = alice
        .history("bob", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(history[1..], expected[..]);
    assert!(alice.sync().await.unwrap().is_empty());
    bob.send("alice", "still works").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["still works"]);
}

/// The mailbox `d` created for `contact` (ids are stored in the clear).
async fn recv_mailbox_of(d: &Device, contact: &str) -> Id32 {
    let home = d.home().to_owned();
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        home.join(chorus_client::STORE_FILE).display()
    ))
    .await
    .unwrap();
    let id: Vec<u8> = sqlx::query_scalar(
        "SELECT mailbox_id FROM mailboxes WHERE kind = 'contact' AND contact = $1",
    )
    .bind(contact)
    .fetch_one(&pool)
    .await
    .unwrap();
    Id32(id.try_into().unwrap())
}

/// Reads a mailbox through the device's own login (the relay lets only the owner read).
async fn relay_read(d: &Device, mailbox: Id32) -> Vec<chorus_relay_api::EnvelopeOut> {
    let mut pages = d
        .relay()
        .read_mailboxes(&[(mailbox, 0)], 100)
        .await
        .unwrap();
    pages.results.remove(0).envelopes
}

#[tokio::test]
async fn init_against_an_unreachable_relay_leaves_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let home = dir.path().join("nobody");
    let err = Device::init(
        &home,
        Unlock::KeyFile,
        "http://127.0.0.1:9",
        "nobody",
        options(&clock),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Relay(RelayError::Unreachable { .. })),
        "{err}"
    );
    assert!(!home.exists());
    assert!(matches!(
        Device::open(&home, Unlock::KeyFile, options(&clock)).await,
        Err(ClientError::NotInitialized(_))
    ));
}

#[tokio::test]
async fn a_wrong_passphrase_is_refused() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let home = dir.path().join("p");
    let pass = |s: &str| Unlock::Passphrase(zeroize::Zeroizing::new(s.to_owned()));
    Device::init(&home, pass("right"), &relay.url, "p", options(&clock))
        .await
        .unwrap();
    assert!(matches!(
        Device::open(&home, pass("wrong"), options(&clock)).await,
        Err(ClientError::Store(StoreError::WrongKey))
    ));
    assert!(
        Device::open(&home, pass("right"), options(&clock))
            .await
            .is_ok()
    );
}

// ---------------------------------------------------------------- relay outages

#[tokio::test]
async fn a_message_sent_while_the_relay_is_down_is_delivered_once_after_it_returns() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    let (addr, data) = relay.stop().await;

    let outcome = alice.send("bob", "while you were out").await.unwrap();
    assert!(matches!(
        outcome.queued,
        Some(RelayError::Unreachable { .. })
    ));
    assert_eq!(alice.status().await.unwrap().outbox, 1);
    assert_eq!(alice.history("bob", 10).await.unwrap().len(), 1);

    let relay = Relay::start_at(addr, data).await;
    assert!(alice.flush_outbox().await.unwrap().is_empty());
    // A second flush (say, a crashed process retrying) posts nothing new.
    assert!(alice.flush_outbox().await.unwrap().is_empty());
    assert_eq!(alice.status().await.unwrap().outbox, 0);
    assert_eq!(texts(&bob.sync().await.unwrap()), ["while you were out"]);
    assert!(bob.sync().await.unwrap().is_empty());
    drop(relay);
}

#[tokio::test]
async fn the_relay_refuses_a_post_of_the_same_envelope_id_with_other_bytes() {
    // The outbox relies on idempotent posts: the same id and bytes are stored once.
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, _bob) = pair(dir.path(), &relay, &clock).await;
    let mailbox = recv_mailbox_of(&alice, "bob").await;
    let public = RelayClient::new(&relay.url, Backoff::COMMAND).unwrap();
    let first = public
        .post_envelope(mailbox, Id16([9; 16]), vec![1, 2, 3])
        .await
        .unwrap();
    let again = public
        .post_envelope(mailbox, Id16([9; 16]), vec![1, 2, 3])
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate && first.seq == again.seq);
    let err = public
        .post_envelope(mailbox, Id16([9; 16]), vec![4])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("envelope_conflict"));
}

#[tokio::test]
async fn an_oversized_answer_from_a_hostile_relay_is_refused_not_buffered() {
    use chorus_client::relay::MAX_RESPONSE_BYTES;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let total = MAX_RESPONSE_BYTES + 1;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 1 << 20];
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            if s.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            sent += n;
        }
    });
    let once = Backoff {
        attempts: 1,
        first: Duration::from_millis(1),
        max: Duration::from_millis(1),
    };
    let client = RelayClient::new(&format!("http://{addr}"), once).unwrap();
    let err = client.health().await.unwrap_err();
    assert!(
        matches!(err, RelayError::BadResponse { ref reason, .. } if reason.contains("larger than")),
        "{err}"
    );
}

#[tokio::test]
async fn a_disk_attacker_cannot_move_a_message_to_another_contact_or_direction() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    bob.send("alice", "from bob").await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(alice.history("bob", 10).await.unwrap()[0].text, "from bob");
    let url = format!(
        "sqlite://{}",
        dir.path()
            .join("alice")
            .join(chorus_client::STORE_FILE)
            .display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    // Mark bob's message as sent by alice: the sealed text no longer opens.
    sqlx::query("UPDATE messages SET outgoing = 1 WHERE outgoing = 0")
        .execute(&pool)
        .await
        .unwrap();
    let e = alice.history("bob", 10).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Store(StoreError::Corrupt(_))),
        "{e}"
    );
    sqlx::query("UPDATE messages SET outgoing = 0")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(alice.history("bob", 10).await.unwrap()[0].text, "from bob");
    pool.close().await;
}

// ---------------------------------------------------------------- session handling
// (issue 11 items 13–15: one mechanism replaces a contact's session, through the log)

/// Every text `d` holds with `contact`, in history order.
async fn history_texts(d: &Device, contact: &str) -> Vec<String> {
    d.history(contact, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

/// Issue 11 item 14: two people who invite each other at once. Each accepts the
/// other's code, so each side holds a session it started and receives a first
/// message for another; before, every message was dropped on both sides ("initial
/// message does not belong to this session") and both waited for a reply forever.
/// Both must settle on one session by the same rule, and what was sent on the
/// losing one must still be read.
#[tokio::test]
async fn two_people_who_invite_each_other_at_once_settle_on_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start().await;
    let clock = TestClock::default();
    let alice = device(dir.path(), "alice", &relay, &clock).await;
    let bob = device(dir.path(), "bob", &relay, &clock).await;
    // Alice's laptop reads everything too, and must agree without deciding.
    let (laptop, _, _) = chorus_client::link::link_locally(
        &alice,
        &dir.path().join("laptop"),
        "laptop",
        Unlock::KeyFile,
        options(&clock),
    )
    .await
    .unwrap();
    let (code_a, code_b) = (alice.invite().await.unwrap(), bob.invite().await.unwrap());
    alice.accept(&code_b, None).await.unwrap();
    bob.accept(&code_a, None).await.unwrap();
    // Each writes on the session it started, before hearing of the other's.
    alice.send("bob", "a1").await.unwrap();
    bob.send("alice", "b1").await.unwrap();
    clock.tick();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    alice.sync().await.unwrap();
    // Then both talk on whatever they settled on.
    alice.send("bob", "a2").await.unwrap();
    bob.send("alice", "b2").await.unwrap();
    for _ in 0..2 {
        alice.sync().await.unwrap();
        bob.sync().await.unwrap();
    }
    let (seen_by_bob, seen_by_alice) = (
        history_texts(&bob, "alice").await,
        history_texts(&alice, "bob").await,
    );
    for text in ["a1", "a2"] {
        assert!(
            seen_by_bob.contains(&text.to_string()),
            "bob: {seen_by_bob:?}"
        );
    }
    for text in ["b1", "b2"] {
        assert!(
            seen_by_alice.contains(&text.to_string()),
            "alice: {seen_by_alice:?}"
        );
    }
    assert_eq!(alice.contacts().await.unwrap().len(), 1);
    assert_eq!(bob.contacts().await.unwrap().len(), 1);
    // And they keep talking, with no reply left waiting.
    alice.send("bob", "a3").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["a3"]);
    bob.send("alice", "b3").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["b3"]);
    for c in alice
        .contacts()
        .await
        .unwrap()
        .into_iter()
        .chain(bob.contacts().await.unwrap())
    {
        assert!(c.connected, "{c:?}");
    }
    // The laptop settled the same way from the log: nothing refused, every message.
    let events = laptop.sync().await.unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Rejected { .. })),
        "{events:?}"
    );
    let on_laptop = history_texts(&laptop, "bob").await;
    for text in ["a1", "a2", "a3", "b1", "b2", "b3"] {
        assert!(
            on_laptop.contains(&text.to_string()),
            "laptop: {on_laptop:?}"
        );
    }
    laptop.send("bob", "from the laptop").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["from the laptop"]);
}

/// Issue 11 item 15: a second person accepting a used invitation got "Added
/// contact", their messages vanished, and the stale contact later blocked a valid
/// invitation between the same two people. Now the invitation's mailbox takes its
/// first sender only: the second acceptor is told at once, the contact shows why it
/// failed, and a later introduction either way replaces it.
#[tokio::test]
async fn a_used_invitation_accepted_again_says_so_and_blocks_no_later_introduction() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start().await;
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    let _ = bob;
    let carol = device(dir.path(), "carol", &relay, &clock).await;
    let dave = device(dir.path(), "dave", &relay, &clock).await;
    let code = alice.invite().await.unwrap();
    let bob2 = device(dir.path(), "bob2", &relay, &clock).await;
    bob2.accept(&code, None).await.unwrap();
    bob2.send("alice", "first to answer").await.unwrap();
    for late in [&carol, &dave] {
        match late.accept(&code, None).await {
            Err(ClientError::InvitationSpent { contact }) => assert_eq!(contact, "alice"),
            other => panic!("accepted a used invitation: {other:?}"),
        }
        let contacts = late.contacts().await.unwrap();
        assert_eq!(contacts.len(), 1);
        assert!(contacts[0].failed.is_some(), "{contacts:?}");
        assert_eq!(late.status().await.unwrap().outbox, 0);
    }
    // The first to answer is unaffected, and nothing of the others reached alice.
    let events = alice.sync().await.unwrap();
    assert_eq!(texts(&events), ["first to answer"]);
    let names: Vec<String> = alice
        .contacts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["bob", "bob2"]);

    // A new invitation from alice replaces carol's failed contact ...
    let code = alice.invite().await.unwrap();
    carol.accept(&code, None).await.unwrap();
    carol.send("alice", "carol here").await.unwrap();
    let events = alice.sync().await.unwrap();
    assert!(
        events.contains(&Event::ContactAdded {
            contact: "carol".into()
        }),
        "{events:?}"
    );
    assert_eq!(texts(&events), ["carol here"]);
    alice.send("carol", "hi carol").await.unwrap();
    assert_eq!(texts(&carol.sync().await.unwrap()), ["hi carol"]);
    // ... and so does alice writing to dave's address: his failed session loses.
    alice
        .add_contact(&dave.address(), Some("dave"))
        .await
        .unwrap();
    alice.send("dave", "hi dave").await.unwrap();
    let events = dave.sync().await.unwrap();
    assert!(
        events.contains(&Event::SessionReset {
            contact: "alice".into()
        }),
        "{events:?}"
    );
    assert_eq!(texts(&events), ["hi dave"]);
    dave.send("alice", "dave here").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["dave here"]);
    for c in carol
        .contacts()
        .await
        .unwrap()
        .into_iter()
        .chain(dave.contacts().await.unwrap())
    {
        assert!(c.failed.is_none() && c.connected, "{c:?}");
    }
}

/// Issue 11 "Also": names on the command line match without regard to case, and a
/// name that matches several contacts that way is an error naming them all.
#[tokio::test]
async fn a_name_matching_several_contacts_by_case_is_an_error_listing_them() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start().await;
    let clock = TestClock::default();
    let carol = device(dir.path(), "carol", &relay, &clock).await;
    let alice = device(dir.path(), "alice", &relay, &clock).await;
    let dave = device(dir.path(), "dave", &relay, &clock).await;
    carol
        .accept(&alice.invite().await.unwrap(), Some("Pat"))
        .await
        .unwrap();
    carol
        .accept(&dave.invite().await.unwrap(), Some("pat"))
        .await
        .unwrap();
    match carol.send("PAT", "which one?").await {
        Err(ClientError::AmbiguousContact { candidates, .. }) => {
            assert_eq!(candidates, ["Pat", "pat"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(carol.status().await.unwrap().outbox, 0);
    // Exact names still work, and a unique one matches in any case.
    carol.send("Pat", "to alice").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["to alice"]);
    assert_eq!(alice.resolve_contact("CAROL").await.unwrap(), "carol");
    assert!(matches!(
        alice.resolve_contact("nobody").await,
        Err(ClientError::UnknownContact(_))
    ));
}
