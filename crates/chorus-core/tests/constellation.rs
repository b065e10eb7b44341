#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The log fold: records authenticate with their relay-visible context, refused records
//! change nothing, and any arrival order of the same events gives the same state.

use chorus_core::{
    Applied, Constellation, LogError, RecordContext, Roster, RosterSigner, open_event, seal_event,
};
use chorus_crypto::{DeviceDhSecret, DeviceSigningKey, EpochKey, RootSigningKey};
use chorus_wire::{EventKind, LogEvent, SecurityLevel};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const LOG: [u8; 32] = [9; 32];

/// A roster of three devices; returns it with the device keys.
fn three_devices() -> (Roster, Vec<[u8; 32]>) {
    let mut rng = StdRng::seed_from_u64(11);
    let root = RootSigningKey::generate(&mut rng);
    let first = DeviceSigningKey::generate(&mut rng);
    let dh = DeviceDhSecret::generate(&mut rng).public_key();
    let g = Roster::genesis(
        &root,
        LOG,
        first.public_key(),
        dh,
        SecurityLevel::SharedRoot,
        "a",
        0,
    )
    .unwrap();
    let mut roster = Roster::from_genesis(LOG, &g).unwrap();
    let mut keys = vec![*first.public_key().as_bytes()];
    for name in ["b", "c"] {
        let d = DeviceSigningKey::generate(&mut rng);
        let dh = DeviceDhSecret::generate(&mut rng).public_key();
        let e = roster
            .authorize(&RosterSigner::Root(&root), d.public_key(), dh, name, 0)
            .unwrap();
        roster.apply(&e).unwrap();
        keys.push(*d.public_key().as_bytes());
    }
    (roster, keys)
}

fn event(author: [u8; 32], id: u8, lamport: u64, kind: EventKind) -> LogEvent {
    LogEvent {
        event_id: [id; 16],
        lamport,
        timestamp_ms: 1000 + lamport,
        author,
        chain: Default::default(),
        kind,
    }
}

#[test]
fn a_record_opens_only_with_its_exact_context() {
    let (_, keys) = three_devices();
    let key = EpochKey::generate(&mut StdRng::seed_from_u64(1));
    let tag = [4u8; 32];
    let ctx = RecordContext {
        log_id: [5; 32],
        epoch: 3,
        author: keys[0],
        guard: Some((&tag, 7)),
    };
    let e = event(
        keys[0],
        1,
        1,
        EventKind::ProfileUpdated {
            name: "alice".into(),
        },
    );
    let r = seal_event(&key, &ctx, &e, &mut StdRng::seed_from_u64(2)).unwrap();
    assert_eq!(open_event(&key, &ctx, &r.nonce, &r.ciphertext).unwrap(), e);
    let moved = [
        RecordContext { epoch: 4, ..ctx },
        RecordContext {
            log_id: [6; 32],
            ..ctx
        },
        RecordContext {
            author: keys[1],
            ..ctx
        },
        RecordContext {
            guard: Some((&tag, 8)),
            ..ctx
        },
        RecordContext { guard: None, ..ctx },
    ];
    for c in moved {
        assert_eq!(
            open_event(&key, &c, &r.nonce, &r.ciphertext),
            Err(LogError::Undecryptable),
            "{c:?}"
        );
    }
    let other_epoch = EpochKey::generate(&mut StdRng::seed_from_u64(3));
    assert_eq!(
        open_event(&other_epoch, &ctx, &r.nonce, &r.ciphertext),
        Err(LogError::Undecryptable)
    );
    // A sibling that names someone else as the author inside the event.
    let lying = event(
        keys[1],
        2,
        1,
        EventKind::ProfileUpdated { name: "x".into() },
    );
    let r = seal_event(&key, &ctx, &lying, &mut StdRng::seed_from_u64(4)).unwrap();
    assert_eq!(
        open_event(&key, &ctx, &r.nonce, &r.ciphertext),
        Err(LogError::AuthorMismatch)
    );
}

#[test]
fn unknown_authors_and_replays_change_nothing() {
    let (roster, keys) = three_devices();
    let mut state = Constellation::new(roster);
    let e = event(
        keys[0],
        1,
        1,
        EventKind::ProfileUpdated {
            name: "alice".into(),
        },
    );
    assert_eq!(state.apply(&e), Ok(Applied::New));
    let before = state.clone();
    assert_eq!(state.apply(&e), Ok(Applied::Duplicate));
    // A replay under the same id with other content is still a duplicate.
    let replay = event(
        keys[1],
        1,
        9,
        EventKind::ProfileUpdated {
            name: "mallory".into(),
        },
    );
    assert_eq!(state.apply(&replay), Ok(Applied::Duplicate));
    let stranger = event(
        [0xee; 32],
        2,
        2,
        EventKind::ProfileUpdated { name: "x".into() },
    );
    assert_eq!(state.apply(&stranger), Err(LogError::UnknownAuthor));
    assert_eq!(state, before);
    assert_eq!(state.profile_name(), Some("alice"));
}

#[test]
fn a_read_marker_and_a_delivery_on_one_device_hold_on_all() {
    let (roster, keys) = three_devices();
    let mut a = Constellation::new(roster.clone());
    let mut b = Constellation::new(roster);
    let events = [
        event(
            keys[0],
            1,
            1,
            EventKind::Read {
                contact: [1; 32],
                up_to: 5,
            },
        ),
        event(
            keys[1],
            2,
            1,
            EventKind::Read {
                contact: [1; 32],
                up_to: 3,
            },
        ),
        event(
            keys[2],
            3,
            2,
            EventKind::Delivered {
                envelope_id: [8; 16],
            },
        ),
    ];
    for e in &events {
        a.apply(e).unwrap();
    }
    for e in events.iter().rev() {
        b.apply(e).unwrap();
    }
    assert_eq!(a.read_up_to(&[1; 32]), 5);
    assert!(a.is_delivered(&[8; 16]) && b.is_delivered(&[8; 16]));
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.next_lamport(), 3);
}

fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (0u8..3, "[a-z]{1,6}").prop_map(|(c, name)| EventKind::ContactUpserted {
            contact: [c; 32],
            name,
            details: None,
        }),
        "[a-z]{1,6}".prop_map(|name| EventKind::ProfileUpdated { name }),
        (1usize..3).prop_map(|n| EventKind::RelaysUpdated {
            relays: (0..n).map(|i| format!("https://r{i}")).collect()
        }),
        (0u8..3, 0u64..20).prop_map(|(c, up_to)| EventKind::Read {
            contact: [c; 32],
            up_to
        }),
        (0u8..4).prop_map(|e| EventKind::Delivered {
            envelope_id: [e; 16]
        }),
        (0u8..3, proptest::bool::ANY).prop_map(|(c, blocked)| EventKind::Blocked {
            contact: [c; 32],
            blocked
        }),
        (0u8..3).prop_map(|d| EventKind::Relinked { device: [d; 32] }),
    ]
}

proptest! {
    /// DESIGN's fold property: any order in which a device receives the same events
    /// (with duplicates) produces the same state digest.
    #[test]
    fn any_arrival_order_of_the_same_events_gives_the_same_digest(
        raw in proptest::collection::vec((0usize..3, 0u64..5, kind()), 1..24),
        order in any::<u64>(),
    ) {
        let (roster, keys) = three_devices();
        let events: Vec<LogEvent> = raw
            .into_iter()
            .enumerate()
            .map(|(i, (who, lamport, kind))| event(keys[who], i as u8, lamport, kind))
            .collect();
        let mut a = Constellation::new(roster.clone());
        for e in &events {
            a.apply(e).unwrap();
        }
        let mut shuffled = events.clone();
        let mut x = order | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        shuffled.extend(events.iter().take(3).cloned()); // duplicates
        let mut b = Constellation::new(roster);
        for e in &shuffled {
            b.apply(e).unwrap();
        }
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(a, b);
    }
}
