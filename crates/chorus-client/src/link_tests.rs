//! A lying approver: bundles a correct device never sends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_crypto::{IdentityDhSecret, RootSigningKey, Signature};
use chorus_relay_api::Id32;
use chorus_wire::{IdentityKeys, LinkHello, LinkMessage, ProvisioningBundle};

use super::{LINK_TIMEOUT, LinkOffer};
use crate::testing::{device, relay};
use crate::testing::{random, rng};
use crate::{ClientError, Device, Options, Unlock};

#[tokio::test]
async fn a_bundle_for_another_identity_than_its_log_is_refused_and_leaves_no_device() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let alice = device(dir.path(), &url, "alice").await;
    let home = dir.path().join("tablet");
    let offer = LinkOffer::new(&home, Unlock::KeyFile, &url, "tablet", &Options::default())
        .await
        .unwrap();
    let code = offer.code();
    let waiting = tokio::spawn(offer.wait_for_approver(LINK_TIMEOUT));
    let approval = alice.approve_link(&code).await.unwrap();
    let pending = waiting.await.unwrap().unwrap();
    assert_eq!(pending.sas(), approval.sas());
    // The approver registers the device at the relay (so it can read the log), then
    // sends a bundle naming alice's log with another identity's root key.
    let proof = crate::testing::root_authorization(&alice, approval.new_device).await;
    alice
        .relay
        .add_device(Id32(*approval.new_device.as_bytes()), &proof)
        .await
        .unwrap();
    let other_root = RootSigningKey::generate(&mut rng());
    let other_dh = IdentityDhSecret::generate(&mut rng());
    let other_keys = IdentityKeys::sign(&other_root, other_dh.public_key()).encode();
    let (epoch, epoch_key) = alice.log.epoch_key().await.unwrap();
    let lie = ProvisioningBundle {
        log_id: alice.log.keys.log_id.0,
        relay_url: url.clone(),
        name: "alice".into(),
        intro_mailbox: alice.me().intro_mailbox.0,
        root: Some(other_root),
        identity_keys: other_keys,
        dh: other_dh,
        epoch,
        epoch_key: epoch_key.to_bytes(),
        checkpoint: random(),
        history_key: None,
        history: Vec::new(),
    };
    approval.post_bundle(&lie, None).await.unwrap();
    let err = pending
        .confirm()
        .await
        .unwrap()
        .finish(Options::default(), LINK_TIMEOUT, |_| {})
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::LinkWrongIdentity), "{err}");
    assert!(
        err.to_string().contains("another identity"),
        "a clear message: {err}"
    );
    assert!(!Device::exists(&home), "no device is left behind");
    assert_eq!(alice.devices().await.unwrap().len(), 1);
}

/// The link code as an observer (the relay, someone who sees the screen) reads it.
fn observed(code: &str) -> super::LinkCode {
    super::LinkCode::decode(code).unwrap()
}

/// Waits for the channel's message at `seq` (any tag); returns it whole.
async fn message_at(relay: &crate::relay::RelayClient, channel: [u8; 32], seq: i64) -> Vec<u8> {
    for _ in 0..200 {
        let page = relay.channel_read(Id32(channel), seq - 1).await.unwrap();
        if let Some(m) = page.messages.into_iter().find(|m| m.seq == seq) {
            return m.payload.0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no channel message {seq}");
}

#[tokio::test]
async fn a_channel_observer_cannot_predict_the_sas_of_a_resumed_link() {
    use super::{commitment, transcript};
    use chorus_crypto::{EphemeralSecret, Sas};
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let _alice = device(dir.path(), &url, "alice").await;
    let observer = crate::relay::RelayClient::new(&url, crate::Backoff::COMMAND).unwrap();
    let home = dir.path().join("phone");

    // Attempt 1: the observer plays the approver just long enough to learn the new
    // device's hello, then breaks the exchange (the user will retry).
    let offer = LinkOffer::new(&home, Unlock::KeyFile, &url, "phone", &Options::default())
        .await
        .unwrap();
    let first = observed(&offer.code());
    let waiting = tokio::spawn(offer.wait_for_approver(LINK_TIMEOUT));
    let junk = EphemeralSecret::generate(&mut rng());
    observer
        .channel_post(
            Id32(first.channel),
            LinkMessage::Commit(commitment(junk.public_key().as_bytes())).encode(),
        )
        .await
        .unwrap();
    let hello_1 = message_at(&observer, first.channel, 2).await;
    observer
        .channel_post(Id32(first.channel), LinkMessage::Reveal([0; 32]).encode())
        .await
        .unwrap();
    assert!(waiting.await.unwrap().is_err());

    // Attempt 2 (resumed: the same device keys and name). The observer fixes its key
    // and predicts the number the new device will show, assuming the hello it saw.
    // Before the hello carried a fresh nonce, this prediction was exact, so the
    // observer could grind keys offline until it matched the real approver's number.
    let offer = LinkOffer::new(&home, Unlock::KeyFile, &url, "phone", &Options::default())
        .await
        .unwrap();
    assert!(offer.resumed());
    let second = observed(&offer.code());
    let waiting = tokio::spawn(offer.wait_for_approver(LINK_TIMEOUT));
    let mine = EphemeralSecret::generate(&mut rng());
    let mine_pub = *mine.public_key().as_bytes();
    let commit = commitment(&mine_pub);
    let predicted = Sas::from_transcript(&transcript(
        &second.channel,
        &second.ephemeral,
        &commit,
        &hello_1,
        &mine_pub,
    ));
    observer
        .channel_post(Id32(second.channel), LinkMessage::Commit(commit).encode())
        .await
        .unwrap();
    let hello_2 = message_at(&observer, second.channel, 2).await;
    observer
        .channel_post(Id32(second.channel), LinkMessage::Reveal(mine_pub).encode())
        .await
        .unwrap();
    let pending = waiting.await.unwrap().unwrap();
    // The same device, but not the same hello: its nonce is new.
    let (LinkMessage::Hello(h1), LinkMessage::Hello(h2)) = (
        LinkMessage::decode(&hello_1).unwrap(),
        LinkMessage::decode(&hello_2).unwrap(),
    ) else {
        panic!("not hellos");
    };
    assert_eq!((h1.device, h1.dh), (h2.device, h2.dh));
    assert_ne!(h1.nonce, h2.nonce);
    assert_ne!(
        pending.sas(),
        predicted,
        "the observer predicted the number"
    );
    pending.decline().await.unwrap();
}

#[tokio::test]
async fn a_hello_naming_an_existing_device_without_its_key_is_refused() {
    use chorus_crypto::EphemeralSecret;
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let alice = device(dir.path(), &url, "alice").await;
    // The attacker shows alice a link code of its own (a phishing QR) and answers
    // with the public keys of alice's existing device, which it cannot sign for.
    let attacker = crate::relay::RelayClient::new(&url, crate::Backoff::COMMAND).unwrap();
    let channel: [u8; 32] = random();
    attacker.create_channel(Id32(channel)).await.unwrap();
    let eph = EphemeralSecret::generate(&mut rng());
    let code = super::LinkCode {
        relay_url: url.clone(),
        channel,
        ephemeral: *eph.public_key().as_bytes(),
    }
    .encode();
    let approving = {
        let code = code.clone();
        async move { alice.approve_link(&code).await.map(|_| ()) }
    };
    let forging = async {
        let _commit = message_at(&attacker, channel, 1).await;
        let mut conn = alice_conn(&dir).await;
        let roster: Vec<Vec<u8>> = sqlx::query_scalar("SELECT entry FROM roster ORDER BY idx")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let genesis = chorus_wire::RosterEntry::decode(&roster[0]).unwrap();
        let (key, dh) = match genesis.body {
            chorus_wire::RosterBody::Genesis {
                device, device_dh, ..
            } => (device, device_dh),
            _ => unreachable!(),
        };
        let hello = LinkMessage::Hello(LinkHello {
            device: key,
            dh,
            nonce: [9; 32],
            name: "laptop".into(),
            signature: Signature::from_slice(&[0; 64]).unwrap(),
            skip_history: false,
        });
        attacker
            .channel_post(Id32(channel), hello.encode())
            .await
            .unwrap();
    };
    let (approved, ()) = tokio::join!(approving, forging);
    let e = approved.unwrap_err();
    assert!(
        matches!(e, ClientError::LinkProtocol(m) if m.contains("not signed by the key it names")),
        "{e}"
    );
}

/// A read-only connection to alice's store (the test reads her roster as an attacker
/// reads it from `chorus devices --json` or the relay's past channel traffic).
async fn alice_conn(dir: &tempfile::TempDir) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let path = dir.path().join("alice").join(crate::STORE_FILE);
    sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap()
}
