//! Recovering a `primary-root` identity from its recovery code, on a real relay: the
//! primary is destroyed, a new device becomes the identity with the code, revokes the
//! lost primary and carries on with the sibling and the contact; a wrong code changes
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_wire::SecurityLevel;

use crate::device::recovery::recover;
use crate::testing::{relay, sibling, texts};
use crate::{ClientError, Device, Options, Unlock};

/// Alice's primary-root laptop with a recovery code, her phone, and Bob, who talked
/// with her. Returns the code too.
async fn alice_with_a_code(dir: &std::path::Path) -> (String, Device, Device, Device) {
    let url = relay(dir).await;
    let laptop = Device::init_with(
        &dir.join("laptop"),
        Unlock::KeyFile,
        &url,
        "alice",
        "laptop",
        SecurityLevel::PrimaryRoot,
        Options::default(),
    )
    .await
    .unwrap();
    let code = laptop.set_up_recovery().await.unwrap().to_string();
    let phone = sibling(&laptop, dir, "phone", Options::default()).await;
    let bob = crate::testing::talking_to_bob(&laptop, dir, &url).await;
    phone.sync().await.unwrap();
    (code, laptop, phone, bob)
}

/// `recover` with a key file, default options and no progress.
async fn recover_as(
    home: &std::path::Path,
    url: &str,
    code: &str,
    name: &str,
) -> Result<crate::device::recovery::Recovered, ClientError> {
    recover(
        home,
        Unlock::KeyFile,
        url,
        code,
        name,
        Options::default(),
        |_| {},
    )
    .await
}

#[tokio::test]
async fn after_the_primary_is_destroyed_the_code_makes_a_new_primary_and_everyone_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (code, laptop, phone, bob) = alice_with_a_code(dir.path()).await;
    let url = laptop.relay_url().to_owned();
    // The phone holds no root: it cannot revoke, link or set up recovery.
    assert!(matches!(
        phone.set_up_recovery().await,
        Err(ClientError::NotPrimary(_))
    ));
    // The laptop falls in the river.
    let laptop_id = laptop
        .devices()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.this_device)
        .unwrap()
        .id;
    drop(laptop);
    std::fs::remove_dir_all(dir.path().join("laptop")).unwrap();

    let home = dir.path().join("new-laptop");
    let recovered = recover_as(&home, &url, &code.to_lowercase(), "new laptop")
        .await
        .unwrap();
    let alice = recovered.device;
    assert_eq!(recovered.revoked.unwrap().id, laptop_id);
    assert!(alice.holds_root());
    let devices = alice.devices().await.unwrap();
    let names: Vec<_> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["phone", "new laptop"]);
    assert!(devices.iter().any(|d| d.this_device && d.primary));

    // What the laptop had is here: the contact and the conversation so far.
    let history = crate::testing::history_texts(&alice, "bob", 10).await;
    assert!(history.contains(&"hello".to_owned()), "{history:?}");

    // The new primary and the phone both send; Bob reads both and answers both.
    alice.send("bob", "I lost my laptop").await.unwrap();
    phone.sync().await.unwrap();
    let phone_devices = phone.devices().await.unwrap();
    assert!(phone_devices.iter().all(|d| d.id != laptop_id));
    assert!(
        phone_devices
            .iter()
            .any(|d| d.name == "new laptop" && d.primary)
    );
    phone.send("bob", "and I am the phone").await.unwrap();
    let got = texts(&bob.sync().await.unwrap());
    assert!(got.contains(&"I lost my laptop".to_owned()), "{got:?}");
    assert!(got.contains(&"and I am the phone".to_owned()), "{got:?}");
    bob.send("alice", "sorry to hear").await.unwrap();
    for d in [&alice, &phone] {
        assert!(texts(&d.sync().await.unwrap()).contains(&"sorry to hear".to_owned()));
    }
    // The new primary links a device: the root works.
    let tablet = sibling(&alice, dir.path(), "tablet", Options::default()).await;
    assert_eq!(tablet.devices().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_wrong_code_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (code, laptop, _phone, _bob) = alice_with_a_code(dir.path()).await;
    let url = laptop.relay_url().to_owned();
    let before = laptop.devices().await.unwrap().len();
    let home = dir.path().join("thief");
    // A code of the right shape that is nobody's.
    let mut rng = crate::testing::rng();
    let other =
        crate::device::recovery::encode_code(&chorus_crypto::RecoveryCode::generate(&mut rng));
    let wrong = recover_as(&home, &url, &other, "thief").await;
    assert!(
        matches!(wrong, Err(ClientError::UnknownRecoveryCode)),
        "{:?}",
        wrong.err()
    );
    // A typo in the real code: caught before any request.
    let typo = code.replacen(&code[..1], if &code[..1] == "A" { "C" } else { "A" }, 1);
    let typo = recover_as(&home, &url, &typo, "thief").await;
    assert!(
        matches!(typo, Err(ClientError::BadRecoveryCode { .. })),
        "{:?}",
        typo.err()
    );
    assert!(!home.exists(), "nothing was created");
    assert_eq!(laptop.devices().await.unwrap().len(), before);
    assert!(laptop.holds_root());
}

#[tokio::test]
async fn to_primary_root_the_others_delete_the_root_and_back_to_shared_root_every_device_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = relay(dir.path()).await;
    let laptop = crate::testing::device(dir.path(), &url, "alice").await;
    let phone = sibling(&laptop, dir.path(), "phone", Options::default()).await;
    assert!(phone.holds_root());

    assert!(
        laptop
            .set_security(SecurityLevel::PrimaryRoot)
            .await
            .unwrap()
    );
    assert!(
        !laptop
            .set_security(SecurityLevel::PrimaryRoot)
            .await
            .unwrap()
    );
    let events = phone.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        crate::Event::SecurityChanged {
            primary_root: true,
            this_device_holds_root: false
        }
    )));
    // A running device (a `watch`) lets go of the root at once, not at its next start.
    assert!(
        !phone.holds_root(),
        "the running phone still holds the root"
    );
    assert!(matches!(
        phone.invite().await,
        Err(ClientError::NotPrimary(_))
    ));
    let home = phone.home().to_owned();
    drop(phone);
    let phone = Device::open(&home, Unlock::KeyFile, Options::default())
        .await
        .unwrap();
    assert!(!phone.holds_root(), "the phone deleted its copy");
    assert!(matches!(
        phone.invite().await,
        Err(ClientError::NotPrimary(_))
    ));
    assert!(matches!(
        phone.set_security(SecurityLevel::SharedRoot).await,
        Err(ClientError::NotPrimary(_))
    ));
    assert!(
        laptop
            .devices()
            .await
            .unwrap()
            .iter()
            .any(|d| d.this_device && d.primary)
    );

    assert!(
        laptop
            .set_security(SecurityLevel::SharedRoot)
            .await
            .unwrap()
    );
    phone.sync().await.unwrap();
    drop(phone);
    let phone = Device::open(&home, Unlock::KeyFile, Options::default())
        .await
        .unwrap();
    assert!(phone.holds_root(), "the root came back sealed to the phone");
    phone.invite().await.unwrap();
    assert!(phone.devices().await.unwrap().iter().all(|d| !d.primary));
}

#[tokio::test]
async fn a_primary_lost_right_after_it_revoked_a_device_is_recovered_past_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (code, laptop, phone, bob) = alice_with_a_code(dir.path()).await;
    let url = laptop.relay_url().to_owned();
    let tablet = sibling(&laptop, dir.path(), "tablet", Options::default()).await;
    drop(tablet);
    // The laptop revokes the tablet (the log moves to epoch 2) and is lost before any
    // other device syncs: the recovery state must already read past the rotation.
    laptop.revoke_device("tablet").await.unwrap();
    assert_eq!(laptop.log.epoch_key().await.unwrap().0, 2);
    drop(laptop);
    std::fs::remove_dir_all(dir.path().join("laptop")).unwrap();
    let recovered = recover_as(&dir.path().join("new-laptop"), &url, &code, "new laptop")
        .await
        .unwrap();
    let alice = recovered.device;
    assert_eq!(
        alice.log.epoch_key().await.unwrap().0,
        3,
        "its own revocation rotated again"
    );
    alice.send("bob", "back after two rotations").await.unwrap();
    assert!(texts(&bob.sync().await.unwrap()).contains(&"back after two rotations".to_owned()));
    phone.sync().await.unwrap();
    assert_eq!(phone.devices().await.unwrap().len(), 2);
}
