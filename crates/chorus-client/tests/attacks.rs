#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Attacks by strangers who know nothing but an identity's public address, each run
//! on the real code path: a real relay on loopback, real device stores, and first
//! messages crafted with the project's own encoders exactly as an attacker would.
//! Every test checks that the attack fails *and* that the identity keeps working
//! afterwards. (Issue 11, items 1–3 and 11; the review is
//! `../shared/reviews/security-2026-11-25.md`, H1 and H2.)

use chorus_client::link::link_locally;
use chorus_client::relay::RelayClient;
use chorus_client::requests::{MAX_PENDING_REQUESTS, MAX_REQUEST_MESSAGES};
use chorus_client::{Backoff, Device, Event, Introduction, Unlock, UrlPolicy};
use chorus_core::{LocalIdentity, Session, initiate};
use chorus_relay_api::{Id16, Id32};
use chorus_wire::Envelope;
use rand::SeedableRng;
use rand::rngs::StdRng;

mod common;
use common::{Relay, TestClock, device, options, texts};

/// Someone who knows only the victim's address: a fresh identity of their own and the
/// victim's published bundle.
struct Stranger {
    rng: StdRng,
    session: Session,
    intro: Introduction,
}

impl Stranger {
    async fn new(seed: u64, victim: &Device) -> Stranger {
        let mut rng = StdRng::seed_from_u64(seed);
        let me = LocalIdentity::generate(&mut rng);
        let intro = Introduction::fetch(&victim.address(), Backoff::COMMAND, UrlPolicy::PERMISSIVE)
            .await
            .unwrap();
        let session = initiate(&me, &intro.bundle, &mut rng).unwrap();
        Stranger {
            rng,
            session,
            intro,
        }
    }

    /// The next first message, with a hello naming `name` and `relay_url`. Built
    /// from the protobuf types directly, as an attacker would: the project's own
    /// `Payload::encode` refuses to encode names it would refuse to read.
    fn message(&mut self, name: &str, relay_url: &str, text: &str) -> Vec<u8> {
        let payload = chorus_wire::proto::Payload {
            version: chorus_wire::WIRE_VERSION,
            sent_ms: 1,
            text: text.into(),
            hello: Some(chorus_wire::proto::Hello {
                relay_url: relay_url.into(),
                mailbox_id: vec![7; 32],
                name: name.into(),
            }),
            ..Default::default()
        };
        let payload = prost::Message::encode_to_vec(&payload);
        let m = self.session.encrypt(&payload, &mut self.rng).unwrap();
        Envelope::Initial(m.bytes).encode()
    }

    /// Posts an envelope to the victim's intro mailbox.
    async fn post(&mut self, envelope: Vec<u8>) {
        let relay = RelayClient::new(&self.intro.address.relay_url, Backoff::COMMAND).unwrap();
        let mut id = [0u8; 16];
        rand::Rng::fill_bytes(&mut self.rng, &mut id);
        relay
            .post_envelope(Id32(self.intro.mailbox.0), Id16(id), envelope)
            .await
            .unwrap();
    }
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

/// A stranger (from `seed`) whose hello names `name` and `relay_url` writes once:
/// `victim` refuses exactly that envelope, saying `why`.
async fn refused_once(victim: &Device, seed: u64, name: &str, relay_url: &str, why: &str) {
    let mut s = Stranger::new(seed, victim).await;
    let m = s.message(name, relay_url, "hello");
    s.post(m).await;
    let events = victim.sync().await.unwrap();
    let refused = rejections(&events);
    assert_eq!(refused.len(), 1, "{name:?} {relay_url}: {events:?}");
    assert!(refused[0].contains(why), "{refused:?}");
}

/// alice and bob, contacts through an invitation.
async fn pair(dir: &std::path::Path, relay: &Relay, clock: &TestClock) -> (Device, Device) {
    let alice = device(dir, "alice", relay, clock).await;
    let bob = device(dir, "bob", relay, clock).await;
    let code = alice.invite().await.unwrap();
    bob.accept(&code, None).await.unwrap();
    alice.sync().await.unwrap();
    (alice, bob)
}

/// The identity still works: both directions deliver.
async fn still_talking(alice: &Device, bob: &Device, text: &str) {
    alice.send("bob", text).await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), [text]);
    bob.send("alice", &format!("re: {text}")).await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), [format!("re: {text}")]);
}

/// The log's length as the relay holds it.
async fn log_head(d: &Device) -> i64 {
    d.relay().log_info().await.unwrap().head_seq
}

#[tokio::test]
async fn a_first_message_carrying_two_thousand_skipped_keys_is_refused_and_receiving_goes_on() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;

    // The attack: encrypt 2,000 first messages, post only the last one. Before the
    // bound, bob kept 2,000 skipped keys, the contact record outgrew the relay's record
    // limit, and every sync failed on this envelope for the mailbox's 30 days.
    let mut mallory = Stranger::new(1, &bob).await;
    let mut last = Vec::new();
    for i in 0..2_000 {
        last = mallory.message("mallory", &relay.url, &format!("m{i}"));
    }
    mallory.post(last).await;
    // A real stranger writes behind it, and alice too.
    let mut carol = Stranger::new(2, &bob).await;
    let hi = carol.message("carol", &relay.url, "hi bob");
    carol.post(hi).await;
    alice.send("bob", "still there?").await.unwrap();

    let events = bob.sync().await.unwrap();
    let refused = rejections(&events);
    assert_eq!(refused.len(), 1, "{events:?}");
    assert!(
        refused[0].contains("first message counter 1999"),
        "{refused:?}"
    );
    assert!(events.iter().any(
        |e| matches!(e, Event::Request { name, text, .. } if name == "carol" && text == "hi bob")
    ));
    assert_eq!(texts(&events), ["still there?"]);
    // Nothing is stuck: the next sync finds nothing, and the identity still talks.
    assert!(bob.sync().await.unwrap().is_empty());
    still_talking(&alice, &bob, "after the attack").await;
}

#[tokio::test]
async fn a_flood_of_strangers_creates_requests_only_no_contact_mailbox_log_record_or_reply() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    let (phone, _, _) = link_locally(
        &bob,
        &dir.path().join("bob-phone"),
        "phone",
        Unlock::KeyFile,
        options(&clock),
    )
    .await
    .unwrap();
    phone.sync().await.unwrap();
    bob.sync().await.unwrap();
    let head = log_head(&bob).await;
    let contacts = bob.contacts().await.unwrap();

    // More strangers than requests may wait, each with a hello naming a tarpit.
    let flood = MAX_PENDING_REQUESTS as u64 + 3;
    for i in 0..flood {
        let mut s = Stranger::new(100 + i, &bob).await;
        let m = s.message(&format!("spam{i}"), "http://127.0.0.1:9", "buy now");
        s.post(m).await;
    }
    let events = bob.sync().await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Request { .. }))
            .count() as u64,
        flood
    );
    // Nothing but requests: no log record, no contact, no outbox row, no mailbox.
    assert_eq!(log_head(&bob).await, head);
    assert_eq!(bob.contacts().await.unwrap(), contacts);
    let status = bob.status().await.unwrap();
    assert_eq!(status.outbox, 0);
    assert_eq!(status.mailboxes.len(), 2, "intro and alice's");
    let requests = bob.requests().await.unwrap();
    assert_eq!(requests.pending.len() as i64, MAX_PENDING_REQUESTS);
    assert_eq!(requests.dropped, 3);
    assert_eq!(requests.pending[0].name, "spam3", "the oldest were dropped");
    assert_eq!(status.requests, MAX_PENDING_REQUESTS);

    // A stranger who keeps writing fills only their own request.
    let mut pest = Stranger::new(7, &bob).await;
    for i in 0..MAX_REQUEST_MESSAGES + 2 {
        let m = pest.message("pest", &relay.url, &format!("p{i}"));
        pest.post(m).await;
    }
    let events = bob.sync().await.unwrap();
    assert_eq!(rejections(&events).len(), 2, "{events:?}");
    let pest_id = bob
        .requests()
        .await
        .unwrap()
        .pending
        .iter()
        .find(|r| r.name == "pest")
        .map(|r| (r.id, r.messages.len()))
        .unwrap();
    assert_eq!(pest_id.1 as i64, MAX_REQUEST_MESSAGES);

    // The phone holds the same requests; blocking there blocks on bob too.
    phone.sync().await.unwrap();
    let on_phone = phone.requests().await.unwrap();
    let pest_on_phone = on_phone
        .pending
        .iter()
        .find(|r| r.name == "pest")
        .unwrap()
        .id;
    phone.block_request(pest_on_phone).await.unwrap();
    bob.sync().await.unwrap();
    assert!(
        bob.requests()
            .await
            .unwrap()
            .pending
            .iter()
            .all(|r| r.name != "pest")
    );
    let m = pest.message("pest", &relay.url, "let me in");
    pest.post(m).await;
    let events = bob.sync().await.unwrap();
    assert!(rejections(&events)[0].contains("blocked"), "{events:?}");

    still_talking(&alice, &bob, "during the flood").await;
}

#[tokio::test]
async fn an_accepted_request_becomes_a_contact_on_every_device_with_its_messages() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let bob = device(dir.path(), "bob", &relay, &clock).await;
    let carol = device(dir.path(), "carol", &relay, &clock).await;
    let (phone, _, _) = link_locally(
        &bob,
        &dir.path().join("bob-phone"),
        "phone",
        Unlock::KeyFile,
        options(&clock),
    )
    .await
    .unwrap();
    let (alias, _) = carol.add_contact(&bob.address(), None).await.unwrap();
    carol.send(&alias, "hello bob").await.unwrap();
    carol.send(&alias, "it's carol").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(matches!(&events[0], Event::Request { name, .. } if name == "carol"));
    assert!(bob.contacts().await.unwrap().is_empty());
    // Carol hears nothing until bob accepts.
    assert!(carol.sync().await.unwrap().is_empty());

    let id = bob.requests().await.unwrap().pending[0].id;
    assert_eq!(bob.accept_request(id, None).await.unwrap(), "carol");
    assert!(bob.requests().await.unwrap().pending.is_empty());
    assert_eq!(history(&bob, "carol").await, ["hello bob", "it's carol"]);
    // The phone held the same request: the fold ends it, with the same history.
    phone.sync().await.unwrap();
    assert!(phone.requests().await.unwrap().pending.is_empty());
    assert_eq!(history(&phone, "carol").await, ["hello bob", "it's carol"]);
    // A second accept of the same request (on the phone, or again) finds nothing.
    assert!(matches!(
        bob.accept_request(id, None).await,
        Err(chorus_client::ClientError::UnknownRequest(_))
    ));
    // The conversation runs both ways, from either device.
    phone.send("carol", "welcome").await.unwrap();
    assert_eq!(texts(&carol.sync().await.unwrap()), ["welcome"]);
    carol.send(&alias, "thanks").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["welcome", "thanks"]);
}

#[tokio::test]
async fn a_stranger_cannot_point_the_devices_at_a_private_or_link_local_host() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    // Bob's own relay is on loopback, so loopback relays are allowed; other classes of
    // host a stranger may name are not (cloud metadata, the LAN, plain http elsewhere).
    for (i, url) in [
        "http://169.254.169.254",
        "http://10.0.0.1:7470",
        "http://192.168.1.1",
        "http://[fe80::1]",
        "http://0.0.0.0:7470",
        "http://user:pw@127.0.0.1:9",
    ]
    .into_iter()
    .enumerate()
    {
        refused_once(&bob, 200 + i as u64, "eve", url, "refusing relay URL").await;
    }
    assert!(bob.requests().await.unwrap().pending.is_empty());
    still_talking(&alice, &bob, "not steered").await;
}

#[tokio::test]
async fn a_stranger_named_like_a_contact_with_invisible_characters_is_refused() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    for (i, name) in ["alice\u{200b}", "\u{202e}ecila", "alice\u{2066}"]
        .into_iter()
        .enumerate()
    {
        refused_once(&bob, 300 + i as u64, name, &relay.url, "invisible").await;
    }
    assert!(bob.requests().await.unwrap().pending.is_empty());
    still_talking(&alice, &bob, "the real alice").await;
}

#[tokio::test]
async fn a_contact_relay_that_never_answers_does_not_hold_up_other_deliveries() {
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    // A tarpit: accepts connections, never answers.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tarpit_url = format!("http://{}", tarpit.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = tarpit.accept().await {
            held.push(sock);
        }
    });
    // A stranger whose hello names the tarpit, accepted by bob: bob's hello reply
    // waits on the tarpit.
    let mut s = Stranger::new(400, &bob).await;
    let m = s.message("slow", &tarpit_url, "hi");
    s.post(m).await;
    bob.sync().await.unwrap();
    let id = bob.requests().await.unwrap().pending[0].id;
    bob.accept_request(id, None).await.unwrap();
    let status = bob.status().await.unwrap();
    assert_eq!(status.outbox, 1);
    let failing = &status.outbox_failing[0];
    assert_eq!((failing.contact.as_str(), failing.attempts), ("slow", 1));
    assert!(failing.next_attempt_ms > clock_now(&clock), "{failing:?}");

    // Alice's messages still go out at once, and the tarpit row is not retried before
    // its time (so it does not cost every send a timeout).
    let outcome = bob.send("alice", "not held up").await.unwrap();
    assert!(outcome.queued.is_none());
    assert_eq!(texts(&alice.sync().await.unwrap()), ["not held up"]);
    assert_eq!(bob.status().await.unwrap().outbox_failing[0].attempts, 1);
    still_talking(&alice, &bob, "and back").await;
}

async fn history(d: &Device, contact: &str) -> Vec<String> {
    d.history(contact, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect()
}

fn clock_now(clock: &TestClock) -> i64 {
    chorus_client::Clock::now_ms(clock)
}

/// Issue 11 item 3: a stranger fills the intro mailbox to the relay's depth. Before,
/// every later first contact was refused (`mailbox_full`) until the flood expired,
/// 30 days later; now the intro mailbox drops its oldest envelope instead.
#[tokio::test]
async fn a_full_intro_mailbox_still_takes_the_next_first_contact() {
    const DEPTH: u32 = 12;
    let relay = Relay::start_with(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        tempfile::tempdir().unwrap(),
        |args| args.mailbox_depth = DEPTH,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (alice, bob) = pair(dir.path(), &relay, &clock).await;
    let mut flood = Stranger::new(900, &bob).await;
    for i in 0..DEPTH + 4 {
        let m = flood.message("flood", &relay.url, &format!("f{i}"));
        flood.post(m).await;
    }
    let mut carol = Stranger::new(901, &bob).await;
    let hi = carol.message("carol", &relay.url, "hi bob, it is carol");
    carol.post(hi).await;
    let events = bob.sync().await.unwrap();
    let requests: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Request { name, text, .. } => Some((name.clone(), text.clone())),
            _ => None,
        })
        .collect();
    assert!(
        requests.contains(&("carol".into(), "hi bob, it is carol".into())),
        "{requests:?}"
    );
    still_talking(&alice, &bob, "after the flood").await;
}
