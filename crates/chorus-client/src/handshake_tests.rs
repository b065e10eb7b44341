//! A known contact's second handshake (issue 11 item 13): the contact starts over with
//! the same identity (reinstalled, or restored an old backup), and the conversation
//! moves to the new session; the old one is read only until it drains, so a *clone*
//! of the contact's old state cannot keep writing on it (Cremers, Jacomme, Naska,
//! USENIX Security 2023). Played from inside the crate: "Bob started over" needs Bob's
//! identity keys without his device's log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chorus_core::{EncryptedMessage, MessageKind, Session, handshakes, initiate};
use chorus_relay_api::{Id16, Id32};
use chorus_wire::{Envelope, Hello, MailboxId, Payload};

use crate::testing::relay;
use crate::testing::{random, rng, texts};
use crate::{Backoff, Clock, Device, Event, Introduction, Options, Unlock, UrlPolicy};

#[derive(Clone, Default)]
struct Moved(Arc<AtomicI64>);

impl Clock for Moved {
    fn now_ms(&self) -> i64 {
        1_800_000_000_000 + self.0.load(Ordering::SeqCst)
    }
}

async fn device(dir: &std::path::Path, url: &str, name: &str, clock: &Moved) -> Device {
    let options = Options {
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    Device::init(&dir.join(name), Unlock::KeyFile, url, name, options)
        .await
        .unwrap()
}

/// A second device of `alice`'s, linked now.
async fn laptop(alice: &Device, dir: &std::path::Path, clock: &Moved) -> Device {
    let options = Options {
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    crate::testing::sibling(alice, dir, "laptop", options).await
}

/// Bob, started over: his identity keys, a session of his own with alice (not from
/// his device's log), and a mailbox for her answers under his log.
struct StartedOver {
    session: Session,
    mailbox: Id32,
    after: i64,
    /// The first message as posted, and where.
    first: Vec<u8>,
    intro: Id32,
}

impl StartedOver {
    async fn new(bob: &Device, alice: &Device) -> StartedOver {
        let intro = Introduction::fetch(&alice.address(), Backoff::COMMAND, UrlPolicy::PERMISSIVE)
            .await
            .unwrap();
        StartedOver::from(bob, intro).await
    }

    async fn from(bob: &Device, intro: Introduction) -> StartedOver {
        let mut session = initiate(&bob.me().identity, &intro.bundle, &mut rng()).unwrap();
        let mailbox = Id32(random());
        bob.relay()
            .register_mailbox(mailbox, crate::relay::MailboxUse::Contact)
            .await
            .unwrap();
        let payload = Payload {
            file: None,
            sent_ms: 1,
            text: "it's bob, on a new phone".into(),
            hello: Some(Hello {
                relay_url: bob.relay_url(),
                mailbox: MailboxId(mailbox.0),
                name: "bob".into(),
            }),
            rolls: Vec::new(),
            roll_seen: None,
            name: None,
            timer: None,
        }
        .encode()
        .unwrap();
        let m = session.encrypt(&payload, &mut rng()).unwrap();
        let first = Envelope::Initial(m.bytes).encode();
        bob.relay()
            .post_envelope(Id32(intro.mailbox.0), Id16(random()), first.clone())
            .await
            .unwrap();
        StartedOver {
            session,
            mailbox,
            after: 0,
            first,
            intro: Id32(intro.mailbox.0),
        }
    }

    /// What alice wrote to the new session since last time.
    async fn read(&mut self, bob: &Device) -> Vec<String> {
        let pages = bob
            .relay()
            .read_mailboxes(&[(self.mailbox, self.after)], 64)
            .await
            .unwrap();
        let mut out = Vec::new();
        for env in pages.results.into_iter().flat_map(|p| p.envelopes) {
            self.after = env.seq;
            let Envelope::Ratchet(bytes) = Envelope::decode(&env.payload.0).unwrap() else {
                panic!("alice answers with ratchet messages");
            };
            let m = EncryptedMessage {
                kind: MessageKind::Ratchet,
                bytes,
            };
            let text = Payload::decode(&self.session.decrypt(&m).unwrap())
                .unwrap()
                .text;
            if !text.is_empty() {
                out.push(text);
            }
        }
        out
    }
}

#[tokio::test]
async fn a_contact_who_starts_over_resets_the_session_and_a_clone_of_the_old_one_is_refused_after_the_drain()
 {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let clock = Moved::default();
    let alice = device(dir.path(), &url, "alice", &clock).await;
    let bob = device(dir.path(), &url, "bob", &clock).await;
    let code = alice.invite().await.unwrap();
    bob.accept(&code, None).await.unwrap();
    alice.sync().await.unwrap();
    alice.send("bob", "hi bob").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["hi bob"]);
    // Alice has a second device: it must settle the same way without reading the
    // handshake itself.
    let laptop = laptop(&alice, dir.path(), &clock).await;

    // Bob starts over with the same identity. Before, alice refused the handshake
    // of a known identity, and bob could never reach her again.
    let mut new_bob = StartedOver::new(&bob, &alice).await;
    let events = alice.sync().await.unwrap();
    assert!(
        events.contains(&Event::SessionReset {
            contact: "bob".into()
        }),
        "{events:?}"
    );
    assert_eq!(texts(&events), ["it's bob, on a new phone"]);
    alice.send("bob", "welcome back").await.unwrap();
    assert_eq!(new_bob.read(&bob).await, ["welcome back"]);
    assert_eq!(alice.contacts().await.unwrap().len(), 1);

    // The laptop folds the reset from the log and writes on the new session too.
    let events = laptop.sync().await.unwrap();
    assert!(
        events.contains(&Event::SessionReset {
            contact: "bob".into()
        }),
        "{events:?}"
    );
    laptop.send("bob", "from the laptop").await.unwrap();
    assert_eq!(new_bob.read(&bob).await, ["from the laptop"]);
    alice.sync().await.unwrap();

    // The old device (a clone of bob's old state, to alice) still writes on the old
    // session: within the drain window that is a message on its way, and is read.
    bob.send("alice", "sent before the reset").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        ["sent before the reset"]
    );
    // Past the window the old session is gone: the clone is refused, nothing shows,
    // on either device.
    let drain = i64::try_from(handshakes::STALE_SESSION_DRAIN.as_millis()).unwrap();
    clock.0.fetch_add(drain, Ordering::SeqCst);
    bob.send("alice", "the clone writes").await.unwrap();
    for d in [&alice, &laptop] {
        let events = d.sync().await.unwrap();
        assert!(
            !texts(&events).contains(&"the clone writes".to_string()),
            "{events:?}"
        );
        assert!(
            events.iter().any(|e| matches!(e, Event::Rejected { .. })),
            "{events:?}"
        );
    }
    let history = crate::testing::history_texts(&alice, "bob", 100).await;
    assert!(
        !history.contains(&"the clone writes".to_string()),
        "{history:?}"
    );
    // The conversation goes on in the new session.
    alice.send("bob", "still here").await.unwrap();
    assert_eq!(new_bob.read(&bob).await, ["still here"]);
}

/// A second handshake is taken only from the contact the mailbox belongs to. The
/// relay knows every mailbox id: before this check, anyone who knew alice's mailbox
/// for bob could post a first message of their own there and, being no contact,
/// be made one at once, past the message requests.
#[tokio::test]
async fn a_stranger_who_knows_a_contact_mailbox_cannot_start_a_session_there() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let clock = Moved::default();
    let alice = device(dir.path(), &url, "alice", &clock).await;
    let bob = device(dir.path(), &url, "bob", &clock).await;
    let code = alice.invite().await.unwrap();
    bob.accept(&code, None).await.unwrap();
    alice.sync().await.unwrap();
    let for_bob: Vec<u8> = sqlx::query_scalar(
        "SELECT mailbox_id FROM mailboxes WHERE kind = 'contact' AND contact = 'bob'",
    )
    .fetch_one(alice.store.pool())
    .await
    .unwrap();
    // Mallory: an identity of her own, alice's published bundle, bob's mailbox.
    let mallory = chorus_core::LocalIdentity::generate(&mut rng());
    let intro = Introduction::fetch(&alice.address(), Backoff::COMMAND, UrlPolicy::PERMISSIVE)
        .await
        .unwrap();
    let mut session = initiate(&mallory, &intro.bundle, &mut rng()).unwrap();
    let payload = Payload {
        file: None,
        sent_ms: 1,
        text: "let me in".into(),
        hello: Some(Hello {
            relay_url: url.clone(),
            mailbox: MailboxId([7; 32]),
            name: "mallory".into(),
        }),
        rolls: Vec::new(),
        roll_seen: None,
        name: None,
        timer: None,
    }
    .encode()
    .unwrap();
    let m = session.encrypt(&payload, &mut rng()).unwrap();
    bob.relay()
        .post_envelope(
            Id32(for_bob.try_into().unwrap()),
            Id16(random()),
            Envelope::Initial(m.bytes).encode(),
        )
        .await
        .unwrap();
    let events = alice.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Rejected { .. })),
        "{events:?}"
    );
    let names: Vec<String> = alice
        .contacts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["bob"]);
    // Alice and bob go on.
    alice.send("bob", "still us").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["still us"]);
    bob.send("alice", "yes").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), ["yes"]);
}

/// The relay keeps every envelope and can post one again. A first message that used
/// only the signed and the last-resort prekeys (a drained directory), put back after
/// the contact had started over once more, would have moved the conversation back
/// onto a session the contact no longer holds (or a clone of them does).
#[tokio::test]
async fn a_replayed_old_first_message_cannot_move_the_conversation_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let clock = Moved::default();
    let alice = device(dir.path(), &url, "alice", &clock).await;
    let bob = device(dir.path(), &url, "bob", &clock).await;
    let code = alice.invite().await.unwrap();
    bob.accept(&code, None).await.unwrap();
    alice.sync().await.unwrap();
    // Alice's directory drained: the next bundle has no one-time key of either kind.
    let drained = loop {
        let intro = Introduction::fetch(&alice.address(), Backoff::COMMAND, UrlPolicy::PERMISSIVE)
            .await
            .unwrap();
        if intro.bundle.one_time_prekey.is_none() && intro.bundle.pq_prekey.last_resort {
            break intro;
        }
    };
    let old = StartedOver::from(&bob, drained).await;
    let reset = Event::SessionReset {
        contact: "bob".into(),
    };
    assert!(alice.sync().await.unwrap().contains(&reset));
    let mut newest = StartedOver::new(&bob, &alice).await;
    assert!(alice.sync().await.unwrap().contains(&reset));
    // A laptop linked now knows the old handshakes from its checkpoint alone.
    let laptop = laptop(&alice, dir.path(), &clock).await;
    laptop.sync().await.unwrap();
    // The old session has drained away; the relay posts its first message again.
    let drain = i64::try_from(handshakes::STALE_SESSION_DRAIN.as_millis()).unwrap();
    clock.0.fetch_add(drain, Ordering::SeqCst);
    bob.relay()
        .post_envelope(old.intro, Id16(random()), old.first.clone())
        .await
        .unwrap();
    for d in [&laptop, &alice] {
        let events = d.sync().await.unwrap();
        assert!(!events.contains(&reset), "{events:?}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Rejected { reason } if reason.contains("replayed"))),
            "{events:?}"
        );
    }
    // The conversation stays on the newest session.
    alice.send("bob", "still the new phone?").await.unwrap();
    assert_eq!(newest.read(&bob).await, ["still the new phone?"]);
}
