//! A lying approver: bundles a correct device never sends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_crypto::{IdentityDhSecret, RootSigningKey};
use chorus_relay::api::Id32;
use chorus_wire::IdentityKeys;

use super::{Bundle, LINK_TIMEOUT, LinkOffer};
use crate::device::{random, rng};
use crate::testing::{device, relay};
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
    alice
        .relay
        .add_device(Id32(*approval.new_device.as_bytes()))
        .await
        .unwrap();
    let other_root = RootSigningKey::generate(&mut rng());
    let other_dh = IdentityDhSecret::generate(&mut rng());
    let other_keys = IdentityKeys::sign(&other_root, other_dh.public_key()).encode();
    let lie = Bundle {
        log_id: alice.log.log_id.0,
        relay_url: url.clone(),
        name: "alice".into(),
        intro_mailbox: alice.me.intro_mailbox.0,
        root: Some(other_root),
        identity_keys: other_keys,
        dh: other_dh,
        epoch: alice.log.epoch,
        epoch_key: alice.log.key.to_bytes(),
        checkpoint: random(),
    };
    approval.post_bundle(&lie).await.unwrap();
    let err = pending
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
