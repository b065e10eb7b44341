#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A device's life after linking, against a real relay (loopback axum app, SQLite file):
//! revoking a lost device.

use std::path::Path;

use chorus_client::link::link_locally;
use chorus_client::{ClientError, Device, Event, RelayError, Unlock};

mod common;
use common::{Relay, TestClock, device as init, options, texts};

async fn link(existing: &Device, dir: &Path, home: &str, clock: &TestClock) -> Device {
    link_locally(
        existing,
        &dir.join(home),
        home,
        Unlock::KeyFile,
        options(clock),
    )
    .await
    .unwrap()
    .0
}

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
    assert_eq!(laptop.devices().await.unwrap().len(), 3);

    let revoked = laptop.revoke_device("tablet").await.unwrap();
    assert_eq!((revoked.name.as_str(), revoked.already), ("tablet", false));
    assert_eq!(revoked.id, found.id[..16]);

    // Every remaining device hears of it from the log, and lists two devices.
    let heard = revoked_names(&phone.sync_log().await.unwrap());
    assert_eq!(heard, [("tablet".to_owned(), false)]);
    for d in [&laptop, &phone] {
        let names: Vec<String> = d
            .devices()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(!names.contains(&"tablet".to_owned()), "{names:?}");
        assert_eq!(names.len(), 2);
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
