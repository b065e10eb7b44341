//! Rolling the identity key (`chorus identity roll`) on a real relay: the contact
//! follows the roll in-band and the conversation goes on with a new safety number; the
//! relay follows it too (the old root authorizes nothing more); a roll signed by keys
//! that were never the contact's is refused as an impostor's; and two different rolls
//! from one root mark the contact as compromised instead of picking one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_crypto::{IdentityDhSecret, RootSigningKey};
use chorus_relay_api::{Id16, Id32};
use chorus_wire::{IdentityKeys, IdentityRoll};

use crate::testing::{relay, rng, sibling, texts};
use crate::{Device, Event, Options};

/// Alice on her laptop and phone (`shared-root`), and Bob, who talked with her.
async fn alice_and_bob(dir: &std::path::Path) -> (Device, Device, Device) {
    let url = relay(dir).await;
    let laptop = crate::testing::device(dir, &url, "alice").await;
    let phone = sibling(&laptop, dir, "phone", Options::default()).await;
    let bob = crate::testing::talking_to_bob(&laptop, dir, &url).await;
    phone.sync().await.unwrap();
    (laptop, phone, bob)
}

/// A copy of the root `d` holds now (what a stolen device takes with it).
fn root_of(d: &Device) -> RootSigningKey {
    RootSigningKey::from_secret_bytes(&d.me().identity.root().unwrap().to_secret_bytes())
}

/// Posts to Bob a message on a copy of `from`'s session with him, carrying `rolls`:
/// what a device holding that session (a clone, or an impostor on the in-band path)
/// sends.
async fn send_rolls(from: &Device, rolls: Vec<IdentityRoll>) {
    let payload = chorus_wire::Payload {
        file: None,
        sent_ms: 1,
        text: "about my keys".into(),
        hello: None,
        rolls,
        roll_seen: None,
        name: None,
        timer: None,
    }
    .encode()
    .unwrap();
    send_payload(from, &payload).await;
}

/// Posts to Bob `payload` (plaintext bytes, as any encoder made them) on a copy of
/// `from`'s session with him.
async fn send_payload(from: &Device, payload: &[u8]) {
    let mut session = from.store.load_session("bob").await.unwrap().unwrap();
    let m = session.encrypt(payload, &mut rng()).unwrap();
    assert_eq!(m.kind, chorus_core::MessageKind::Ratchet);
    let to: Vec<u8> = sqlx::query_scalar("SELECT send_mailbox FROM contacts WHERE name = 'bob'")
        .fetch_one(from.store.pool())
        .await
        .unwrap();
    from.relay
        .post_envelope(
            Id32(to.try_into().unwrap()),
            Id16(crate::testing::random()),
            chorus_wire::Envelope::Ratchet(m.bytes).encode(),
        )
        .await
        .unwrap();
}

/// A roll from `old` to a fresh identity.
fn roll_from(old: &RootSigningKey) -> IdentityRoll {
    let new = RootSigningKey::generate(&mut rng());
    let keys = IdentityKeys::sign(&new, IdentityDhSecret::generate(&mut rng()).public_key());
    IdentityRoll::sign(old, &new, keys)
}

#[tokio::test]
async fn a_roll_reaches_the_contact_in_band_and_only_the_new_root_signs_at_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (laptop, phone, bob) = alice_and_bob(dir.path()).await;
    let before = bob.verify("alice").await.unwrap().safety_number;
    let (old_fingerprint, old_root) = (laptop.fingerprint(), root_of(&laptop));

    let rolled = laptop.roll_identity().await.unwrap();
    assert_ne!(rolled.fingerprint, old_fingerprint.digits());
    assert_eq!(laptop.fingerprint().digits(), rolled.fingerprint);

    // The phone folds the roll: the new keys, the new root (shared-root), at once.
    let events = phone.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::IdentityRolled { this_device_holds_root: true, fingerprint } if *fingerprint == rolled.fingerprint
    )));
    assert_eq!(phone.fingerprint(), laptop.fingerprint());
    assert!(phone.holds_root());

    // Bob learns it with the phone's next message, and the conversation goes on.
    phone.send("bob", "after the roll").await.unwrap();
    let events = bob.sync().await.unwrap();
    let Some(Event::ContactRolled {
        contact,
        safety_number,
    }) = events
        .iter()
        .find(|e| matches!(e, Event::ContactRolled { .. }))
    else {
        panic!("Bob is told of the roll: {events:?}");
    };
    assert_eq!(contact, "alice");
    assert_eq!(texts(&events), ["after the roll"]);
    let now = bob.verify("alice").await.unwrap();
    assert_ne!(now.safety_number, before, "the safety number changes");
    assert_eq!(now.safety_number.to_string(), *safety_number);
    assert_eq!(
        now.safety_number,
        laptop.verify("bob").await.unwrap().safety_number,
        "both sides show the same new number"
    );
    assert!(now.rival.is_none());

    // Bob answers with the new root; from then on no message carries the roll.
    bob.send("alice", "got it").await.unwrap();
    assert!(texts(&laptop.sync().await.unwrap()).contains(&"got it".to_owned()));
    let acked: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT roll_acked FROM contacts WHERE name = 'bob'")
            .fetch_one(laptop.store.pool())
            .await
            .unwrap();
    assert_eq!(
        acked.as_deref(),
        Some(&laptop.me().identity.keys().root.as_bytes()[..])
    );
    laptop.send("bob", "plain again").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert_eq!(texts(&events), ["plain again"]);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ContactRolled { .. } | Event::Rejected { .. }))
    );

    // The relay follows the roll: the old root (a thief's copy) authorizes no device…
    let intruder = chorus_crypto::DeviceSigningKey::generate(&mut rng()).public_key();
    let mut conn = laptop.store.pool().acquire().await.unwrap();
    let roster = crate::store::log_state::load_roster(&mut conn, &laptop.log.keys.log_id)
        .await
        .unwrap();
    drop(conn);
    let dh = chorus_crypto::DeviceDhSecret::generate(&mut rng()).public_key();
    let by_old = chorus_wire::RosterEntry::sign(
        laptop.log.keys.log_id.0,
        roster.next_index(),
        Some(roster.head()),
        0,
        &chorus_wire::RosterBody::DeviceAuthorized {
            device: intruder,
            device_dh: dh,
            name: "intruder".into(),
        },
        |b| {
            (
                *old_root.public_key().as_bytes(),
                old_root.sign(chorus_wire::ROSTER_CONTEXT, b),
            )
        },
    )
    .unwrap();
    let refused = laptop
        .relay
        .add_device(Id32(*intruder.as_bytes()), by_old.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("not_authorized"));
    // …the new one does: a device linked after the roll joins and talks at once.
    let tablet = sibling(&laptop, dir.path(), "tablet", Options::default()).await;
    assert_eq!(tablet.fingerprint(), laptop.fingerprint());
    tablet.send("bob", "from the tablet").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["from the tablet"]);

    // And the directory moved to the new address.
    let carol = crate::testing::device(dir.path(), &laptop.relay_url(), "carol").await;
    carol
        .add_contact(&laptop.address(), Some("alice"))
        .await
        .unwrap();
    assert_eq!(
        carol.verify("alice").await.unwrap().theirs,
        laptop.fingerprint()
    );
    // The old address hands out nothing any more.
    let old_address = format!("{}@{}", old_fingerprint.digits(), laptop.relay_url());
    let gone = crate::device::Introduction::fetch(
        &old_address,
        crate::relay::Backoff::COMMAND,
        crate::relay::UrlPolicy::PERMISSIVE,
    )
    .await
    .expect_err("nothing at the old address");
    assert!(matches!(gone, crate::ClientError::UnknownAddress), "{gone}");
}

#[tokio::test]
async fn a_roll_not_signed_by_the_contacts_key_is_refused_and_the_conversation_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (laptop, _phone, bob) = alice_and_bob(dir.path()).await;
    let before = bob.verify("alice").await.unwrap().safety_number;

    // A roll "from" Alice signed by a key that was never hers (both its signatures
    // verify: only where it starts gives it away).
    let mallory = RootSigningKey::generate(&mut rng());
    // (On Alice's open chain, which her own devices can follow.)
    laptop.send("bob", "before").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["before"]);
    send_rolls(&laptop, vec![roll_from(&mallory)]).await;
    let events = bob.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Rejected { reason } if reason.contains("impostor"))),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ContactRolled { .. })),
        "{events:?}"
    );
    // The message came over Alice's session: it is delivered; the roll is not followed
    // and not answered.
    assert_eq!(texts(&events), ["about my keys"]);
    assert_eq!(bob.verify("alice").await.unwrap().safety_number, before);
    let answer: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT roll_answer FROM contacts WHERE name = 'alice'")
            .fetch_one(bob.store.pool())
            .await
            .unwrap();
    assert_eq!(answer, None);
    bob.send("alice", "ok").await.unwrap();
    assert!(texts(&laptop.sync().await.unwrap()).contains(&"ok".to_owned()));

    // A statement whose previous-key signature is forged does not decode: the whole
    // message is refused and changes nothing.
    let real = roll_from(&root_of(&laptop));
    let mut roll = chorus_wire::proto::IdentityRoll::default();
    prost::Message::merge(&mut roll, &real.encode()[..]).unwrap();
    roll.old_signature[0] ^= 1;
    assert!(IdentityRoll::decode(&prost::Message::encode_to_vec(&roll)).is_err());
    let forged = chorus_wire::proto::Payload {
        version: chorus_wire::WIRE_VERSION,
        sent_ms: 1,
        text: "forged".into(),
        rolls: vec![roll],
        ..Default::default()
    };
    send_payload(&laptop, &prost::Message::encode_to_vec(&forged)).await;
    let events = bob.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Rejected { reason } if reason.contains("identity roll"))),
        "{events:?}"
    );
    assert_eq!(bob.verify("alice").await.unwrap().safety_number, before);

    // What comes behind the refusals is received as ever.
    laptop.send("bob", "still me").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["still me"]);
    assert_eq!(bob.verify("alice").await.unwrap().safety_number, before);
}

#[tokio::test]
async fn two_rolls_from_one_root_mark_the_contact_compromised_and_pick_neither() {
    let dir = tempfile::tempdir().unwrap();
    let (laptop, phone, bob) = alice_and_bob(dir.path()).await;
    // The phone is stolen with the root (shared-root). The thief rolls the identity to
    // a key of its own and tells Bob in-band, before Alice notices: Bob cannot tell
    // that roll from Alice's, and follows it.
    let thiefs = roll_from(&root_of(&phone));
    send_rolls(&phone, vec![thiefs.clone()]).await;
    let events = bob.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ContactRolled { .. }))
    );
    let followed = bob.verify("alice").await.unwrap().safety_number;

    // Alice revokes the phone and rolls: her roll leaves the same root for another key.
    laptop.revoke_device("phone").await.unwrap();
    laptop.roll_identity().await.unwrap();
    laptop.send("bob", "I rolled my key").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ContactCompromised { contact } if contact == "alice")),
        "{events:?}"
    );
    assert_eq!(texts(&events), ["I rolled my key"]);
    // Neither roll is picked silently: the pin stays, and both numbers are shown.
    let v = bob.verify("alice").await.unwrap();
    assert_eq!(v.safety_number, followed);
    assert_eq!(
        v.rival.expect("the roll not followed is shown"),
        chorus_crypto::SafetyNumber::new(
            &bob.me().identity.keys().root,
            &laptop.me().identity.keys().root
        )
    );
    let listed = bob.contacts().await.unwrap();
    assert!(listed.iter().any(|c| c.name == "alice" && c.compromised));
    // A device Bob links now starts where his others stand: the same pin, the same
    // mark, the same steps followed.
    let tablet = sibling(&bob, dir.path(), "bob-tablet", Options::default()).await;
    let w = tablet.verify("alice").await.unwrap();
    assert_eq!(w.safety_number, v.safety_number);
    assert_eq!(w.rival, v.rival);
    assert!(tablet.contacts().await.unwrap()[0].compromised);

    // Messages still arrive, but a compromised contact's keys move no more, and Bob
    // is not told again with every message.
    laptop.send("bob", "again").await.unwrap();
    for d in [&bob, &tablet] {
        let events = d.sync().await.unwrap();
        assert_eq!(texts(&events), ["again"]);
        assert!(!events.iter().any(|e| matches!(
            e,
            Event::ContactRolled { .. } | Event::ContactCompromised { .. }
        )));
        assert_eq!(d.verify("alice").await.unwrap().safety_number, followed);
    }
}

#[tokio::test]
async fn after_a_roll_a_handshake_under_the_previous_key_is_refused() {
    use crate::device::Introduction;
    use crate::relay::{Backoff, UrlPolicy};
    let dir = tempfile::tempdir().unwrap();
    let (laptop, phone, bob) = alice_and_bob(dir.path()).await;
    // What a thief of the phone holds: the identity as it was, root and DH key.
    let row = phone.store.identity().await.unwrap().unwrap();
    let held = crate::identity::IdentitySecrets::from_bytes(&row.secrets).unwrap();
    let old = chorus_core::LocalIdentity::from_parts(held.root.unwrap(), held.dh);
    laptop.roll_identity().await.unwrap();
    laptop.send("bob", "rolled").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ContactRolled { .. }))
    );
    let rolled = bob.verify("alice").await.unwrap().safety_number;

    // The thief starts a new session with Bob as the Alice it knew.
    let intro = Introduction::fetch(&bob.address(), Backoff::COMMAND, UrlPolicy::PERMISSIVE)
        .await
        .unwrap();
    let mut session = chorus_core::initiate(&old, &intro.bundle, &mut rng()).unwrap();
    let mailbox = Id32(crate::testing::random());
    phone
        .relay()
        .register_mailbox(mailbox, crate::relay::MailboxUse::Contact)
        .await
        .unwrap();
    let payload = chorus_wire::Payload {
        file: None,
        sent_ms: 1,
        text: "it's alice, on a new phone".into(),
        hello: Some(chorus_wire::Hello {
            relay_url: phone.relay_url(),
            mailbox: chorus_wire::MailboxId(mailbox.0),
            name: "alice".into(),
        }),
        rolls: Vec::new(),
        roll_seen: None,
        name: None,
        timer: None,
    }
    .encode()
    .unwrap();
    let m = session.encrypt(&payload, &mut rng()).unwrap();
    phone
        .relay()
        .post_envelope(
            Id32(intro.mailbox.0),
            Id16(crate::testing::random()),
            chorus_wire::Envelope::Initial(m.bytes).encode(),
        )
        .await
        .unwrap();
    let events = bob.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::SessionReset { .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Rejected { reason } if reason.contains("rolled away from"))
        )
    );
    assert_eq!(bob.verify("alice").await.unwrap().safety_number, rolled);
    laptop.send("bob", "still me").await.unwrap();
    assert_eq!(texts(&bob.sync().await.unwrap()), ["still me"]);
}

#[tokio::test]
async fn in_primary_root_a_roll_keeps_the_recovery_code_working() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let laptop = Device::init_with(
        &dir.path().join("laptop"),
        crate::Unlock::KeyFile,
        &url,
        "alice",
        "laptop",
        chorus_wire::SecurityLevel::PrimaryRoot,
        Options::default(),
    )
    .await
    .unwrap();
    let code = laptop.set_up_recovery().await.unwrap().to_string();
    let phone = sibling(&laptop, dir.path(), "phone", Options::default()).await;
    // A device without the root cannot roll.
    assert!(matches!(
        phone.roll_identity().await,
        Err(crate::ClientError::NotPrimary(_))
    ));
    laptop.roll_identity().await.unwrap();
    let events = phone.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::IdentityRolled {
            this_device_holds_root: false,
            ..
        }
    )));
    assert_eq!(phone.fingerprint(), laptop.fingerprint());
    assert!(!phone.holds_root());

    // The laptop is lost after the roll: the code still makes a new primary, with the
    // new root (the kit was sealed again).
    let fingerprint = laptop.fingerprint();
    drop(laptop);
    let recovered = crate::device::recovery::recover(
        &dir.path().join("new"),
        crate::Unlock::KeyFile,
        &url,
        &code,
        "new laptop",
        Options::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(recovered.device.fingerprint(), fingerprint);
    assert!(recovered.device.holds_root());
    assert!(recovered.revoked.is_some());
    phone.sync().await.unwrap();
}

#[tokio::test]
async fn a_roll_racing_a_siblings_roll_says_so_and_rolls_once() {
    let dir = tempfile::tempdir().unwrap();
    let (laptop, phone, _bob) = alice_and_bob(dir.path()).await;
    laptop.roll_identity().await.unwrap();
    // The phone had not folded the laptop's roll when it was asked to roll too.
    assert!(matches!(
        phone.roll_identity().await,
        Err(crate::ClientError::RolledMeanwhile)
    ));
    assert_eq!(phone.fingerprint(), laptop.fingerprint());
    let mut conn = laptop.store.pool().acquire().await.unwrap();
    let roster = crate::store::log_state::load_roster(&mut conn, &laptop.log.keys.log_id)
        .await
        .unwrap();
    assert_eq!(roster.rolls().len(), 1);
}

#[tokio::test]
async fn an_invitation_made_before_a_roll_no_longer_works() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let alice = crate::testing::device(dir.path(), &url, "alice").await;
    let code = alice.invite().await.unwrap();
    alice.roll_identity().await.unwrap();
    // Carol accepts the old invitation: it names the identity keys Alice left.
    let carol = crate::testing::device(dir.path(), &url, "carol").await;
    carol.accept(&code, Some("alice")).await.unwrap();
    let events = alice.sync().await.unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ContactAdded { .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Rejected { .. })),
        "the first message arrived and was refused: {events:?}"
    );
    assert!(alice.contacts().await.unwrap().is_empty());
    // A new invitation works.
    let carol2 = crate::testing::device(dir.path(), &url, "carol2").await;
    carol2
        .accept(&alice.invite().await.unwrap(), Some("alice"))
        .await
        .unwrap();
    let events = alice.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ContactAdded { .. })),
        "{events:?}"
    );
}
