#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The log fold that ships (`Constellation::fold_page`): records authenticate with their
//! relay-visible context, refused records change nothing but the log position, a
//! duplicate is harmless and says so, and any interleaving of the same records that
//! keeps each stream's order gives the same state.

use chorus_core::PrekeyPrivate;
use chorus_core::{
    Constellation, Contact, Effect, LogError, Outcome, Record, RecordContext, Roster, RosterSigner,
    Sessions, StreamHead, open_event, record_hash, seal_event,
};
use chorus_crypto::{
    DeviceDhSecret, DeviceSigningKey, EpochKey, OneTimePrekeySecret, RootSigningKey,
};
use chorus_wire::{EventKind, LogEvent, PrekeyKind, PrekeySecret, SecretBytes, SecurityLevel};
use proptest::prelude::*;

mod common;
use rand::SeedableRng;
use rand::rngs::StdRng;

const LOG: [u8; 32] = [9; 32];

/// A roster of three devices; returns it with the device keys.
fn three_devices() -> (Roster, Vec<[u8; 32]>) {
    let (roster, keys, _) = three_devices_logged();
    (roster, keys)
}

/// The same, with the roster's encoded entries (what a store keeps).
fn three_devices_logged() -> (Roster, Vec<[u8; 32]>, Vec<Vec<u8>>) {
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
    let mut entries = vec![g.as_bytes().to_vec()];
    let mut keys = vec![*first.public_key().as_bytes()];
    for name in ["b", "c"] {
        let d = DeviceSigningKey::generate(&mut rng);
        let dh = DeviceDhSecret::generate(&mut rng).public_key();
        let e = roster
            .authorize(&RosterSigner::Root(&root), d.public_key(), dh, name, 0)
            .unwrap();
        roster.apply(&e).unwrap();
        entries.push(e.as_bytes().to_vec());
        keys.push(*d.public_key().as_bytes());
    }
    (roster, keys, entries)
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

/// Contacts the property tests' events may name, known before the first record.
const CONTACTS: [u8; 3] = [1, 2, 3];

/// A state at the three-device roster that already knows [`CONTACTS`] (restored as a
/// store would restore it).
fn state() -> Constellation {
    let (_, _, entries) = three_devices_logged();
    common::restored(
        LOG,
        entries,
        CONTACTS
            .iter()
            .map(|&c| {
                (
                    [c; 32],
                    Contact {
                        alias: format!("contact{c}"),
                        read_up_to: 0,
                    },
                )
            })
            .collect(),
    )
}

fn epoch_key() -> EpochKey {
    EpochKey::generate(&mut StdRng::seed_from_u64(77))
}

/// A record as the relay stores it.
#[derive(Clone)]
struct Stored {
    author: [u8; 32],
    guard: Option<([u8; 32], i64)>,
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
}

impl Stored {
    fn seal(key: &EpochKey, e: &LogEvent, guard: Option<([u8; 32], i64)>, seed: u64) -> Self {
        let ctx = RecordContext {
            log_id: LOG,
            epoch: 1,
            author: e.author,
            guard: guard.as_ref().map(|(t, v)| (&t[..], *v)),
        };
        let r = seal_event(key, &ctx, e, &mut StdRng::seed_from_u64(seed)).unwrap();
        Self {
            author: e.author,
            guard,
            nonce: r.nonce,
            ciphertext: r.ciphertext,
        }
    }

    fn hash(&self) -> [u8; 32] {
        record_hash(
            &LOG,
            1,
            &self.author,
            self.guard.as_ref().map(|(t, v)| (&t[..], *v)),
            &self.nonce,
            &self.ciphertext,
        )
    }
}

/// Folds `log` after what `state` folded, as one page; returns the outcomes.
fn fold(state: &mut Constellation, key: &EpochKey, log: &[Stored]) -> Vec<Outcome> {
    let first = state.applied() + 1;
    let records: Vec<Record<'_>> = log
        .iter()
        .enumerate()
        .map(|(i, s)| Record {
            seq: first + i as u64,
            epoch: 1,
            author: s.author,
            guard: s.guard.as_ref().map(|(t, v)| (&t[..], *v)),
            nonce: &s.nonce,
            ciphertext: &s.ciphertext,
        })
        .collect();
    let opened = records.iter().map(|r| state.open(key, r)).collect();
    state
        .fold_page(key, &records, opened, &mut Sessions::default())
        .unwrap()
        .into_iter()
        .map(|f| f.outcome)
        .collect()
}

#[test]
fn unknown_authors_and_replays_change_nothing_and_a_replay_says_so() {
    let (_, keys) = three_devices();
    let key = epoch_key();
    let mut state = state();
    let profile = |author, id, lamport, name: &str| {
        let e = event(
            author,
            id,
            lamport,
            EventKind::ProfileUpdated { name: name.into() },
        );
        Stored::seal(&key, &e, None, u64::from(id))
    };
    let first = profile(keys[0], 1, 1, "alice");
    let out = fold(&mut state, &key, std::slice::from_ref(&first));
    assert!(
        matches!(&out[0], Outcome::Applied(e) if e.iter().any(|e| matches!(e, Effect::Profile(n) if n == "alice")))
    );
    let digest = state.digest();
    // The same record shown again, and another record reusing its event id.
    let out = fold(
        &mut state,
        &key,
        &[first, profile(keys[1], 1, 9, "mallory")],
    );
    assert!(
        matches!(out[..], [Outcome::Duplicate, Outcome::Duplicate]),
        "{out:?}"
    );
    let stranger = profile([0xee; 32], 2, 2, "x");
    let out = fold(&mut state, &key, &[stranger]);
    assert!(
        matches!(out[..], [Outcome::Refused(LogError::UnknownAuthor)]),
        "{out:?}"
    );
    // Nothing changed but the log position.
    assert_eq!(state.digest(), digest);
    assert_eq!(state.applied(), 4);
    assert_eq!(state.profile_name(), Some("alice"));
}

#[test]
fn a_page_that_skips_a_seq_is_refused_whole_and_changes_nothing() {
    let (_, keys) = three_devices();
    let key = epoch_key();
    let mut state = state();
    let e = event(
        keys[0],
        1,
        1,
        EventKind::ProfileUpdated { name: "a".into() },
    );
    let s = Stored::seal(&key, &e, None, 1);
    let records = [1u64, 3].map(|seq| Record {
        seq,
        epoch: 1,
        author: s.author,
        guard: None,
        nonce: &s.nonce,
        ciphertext: &s.ciphertext,
    });
    let before = state.clone();
    let opened = records.iter().map(|r| state.open(&key, r)).collect();
    let got = state.fold_page(&key, &records, opened, &mut Sessions::default());
    assert!(
        matches!(
            got,
            Err(LogError::Gap {
                expected: 2,
                got: 3
            })
        ),
        "{got:?}"
    );
    assert_eq!(state, before);
}

#[test]
fn a_read_marker_and_a_delivery_on_one_device_hold_on_all() {
    let (_, keys) = three_devices();
    let key = epoch_key();
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
    let log: Vec<Stored> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Stored::seal(&key, e, None, i as u64))
        .collect();
    let (mut a, mut b) = (state(), state());
    fold(&mut a, &key, &log);
    let reversed: Vec<Stored> = log.iter().rev().cloned().collect();
    let out = fold(&mut b, &key, &reversed);
    assert!(out.iter().any(|o| matches!(o, Outcome::Applied(e) if e.iter().any(|e| matches!(e, Effect::Delivered { envelope_id } if *envelope_id == [8; 16])))));
    assert_eq!(a.contact(&[1; 32]).unwrap().read_up_to, 5);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.lamport(), 2);
}

/// A `Received` event logged by `author` (a message from contact `[1; 32]`).
fn received(author: [u8; 32], id: u8, sent_ms: u64, text: &str) -> LogEvent {
    event(
        author,
        id,
        u64::from(id),
        EventKind::Received {
            contact: [1; 32],
            message: chorus_wire::FirstMessage {
                file: None,
                envelope_id: [id; 16],
                sent_ms,
                text: text.to_owned(),
            },
            position: u64::from(id),
        },
    )
}

/// Folds `events` as one log on a fresh state: the state, and what each record did.
fn folded(events: &[LogEvent]) -> (Constellation, Vec<Outcome>) {
    let key = epoch_key();
    let log: Vec<Stored> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Stored::seal(&key, e, None, i as u64))
        .collect();
    let mut state = state();
    let outcomes = fold(&mut state, &key, &log);
    (state, outcomes)
}

/// Folds `events` as one log on a fresh state: the messages shown, each with whether
/// it was read.
fn folded_messages(events: &[LogEvent]) -> Vec<(String, bool)> {
    folded(events)
        .1
        .into_iter()
        .flat_map(|o| match o {
            Outcome::Applied(effects) => effects,
            _ => Vec::new(),
        })
        .filter_map(|e| match e {
            Effect::Message(h) => Some((h.text, h.read)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_message_logged_by_a_sibling_is_read_when_the_read_marker_covers_it() {
    let (_, keys) = three_devices();
    let received = |id: u8, sent_ms: u64, text: &str| received(keys[1], id, sent_ms, text);
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
        received(2, 5, "covered"),
        received(3, 6, "after the marker"),
    ];
    assert_eq!(
        folded_messages(&events),
        [
            ("covered".to_owned(), true),
            ("after the marker".to_owned(), false)
        ]
    );
}

#[test]
fn the_later_timer_setting_wins_whatever_order_the_log_has_them_in() {
    let (_, keys) = three_devices();
    let set = |author, id: u8, set_ms: u64, secs: u64| {
        event(
            author,
            id,
            u64::from(id),
            EventKind::TimerSet {
                contact: [1; 32],
                timer: chorus_wire::Timer { set_ms, secs },
            },
        )
    };
    let timer = |events: &[LogEvent]| folded(events).0.timer(&[1; 32]);
    let (earlier, later) = ((100, 86_400), (200, 0));
    for events in [
        [
            set(keys[0], 1, earlier.0, earlier.1),
            set(keys[1], 2, later.0, later.1),
        ],
        [
            set(keys[1], 1, later.0, later.1),
            set(keys[0], 2, earlier.0, earlier.1),
        ],
    ] {
        assert_eq!(
            timer(&events),
            Some(chorus_wire::Timer {
                set_ms: 200,
                secs: 0
            })
        );
    }
    // The same moment on both sides: the longer one, on every device.
    let events = [set(keys[0], 1, 300, 60), set(keys[1], 2, 300, 30)];
    assert_eq!(timer(&events).map(|t| t.secs), Some(60));
}

#[test]
fn a_timer_set_in_the_far_future_does_not_lock_the_setting() {
    let (_, keys) = three_devices();
    // A contact (adopted by keys[1]) said it set the timer at the end of time; a later
    // setting of ours must still win.
    let events = [
        event(
            keys[1],
            1,
            5_000,
            EventKind::TimerSet {
                contact: [1; 32],
                timer: chorus_wire::Timer {
                    set_ms: u64::MAX,
                    secs: 60,
                },
            },
        ),
        event(
            keys[0],
            2,
            9_000,
            EventKind::TimerSet {
                contact: [1; 32],
                timer: chorus_wire::Timer {
                    set_ms: 9_000,
                    secs: 0,
                },
            },
        ),
    ];
    assert_eq!(
        folded(&events).0.timer(&[1; 32]),
        Some(chorus_wire::Timer {
            set_ms: 9_000,
            secs: 0
        })
    );
}

#[test]
fn a_removed_contact_is_gone_and_what_names_it_later_is_refused() {
    let (_, keys) = three_devices();
    let removed = |author, id: u8| {
        event(
            author,
            id,
            u64::from(id),
            EventKind::ContactRemoved { contact: [1; 32] },
        )
    };
    let events = [
        received(keys[1], 1, 1, "before"),
        removed(keys[0], 2),
        // A sibling logged a message from them before it folded the removal; and a
        // second removal from a device that had not seen the first.
        received(keys[1], 3, 3, "after"),
        removed(keys[2], 4),
    ];
    let (state, outcomes) = folded(&events);
    assert!(state.contact(&[1; 32]).is_none());
    assert!(
        matches!(&outcomes[1], Outcome::Applied(e)
            if e.iter().any(|e| matches!(e, Effect::ContactRemoved { root, .. } if *root == [1; 32]))),
        "{outcomes:?}"
    );
    for refused in &outcomes[2..] {
        assert!(
            matches!(refused, Outcome::Refused(e) if format!("{e:?}").contains("UnknownContact")),
            "{outcomes:?}"
        );
    }
}

#[test]
fn a_verified_mark_names_the_root_compared_and_the_last_writer_wins() {
    let (_, keys) = three_devices();
    let mark = |author, id: u8, root: Option<[u8; 32]>| {
        event(
            author,
            id,
            u64::from(id),
            EventKind::Verified {
                contact: [1; 32],
                root,
            },
        )
    };
    let fold_all = |events: &[LogEvent]| folded(events).0.verified_root(&[1; 32]);
    assert_eq!(fold_all(&[mark(keys[0], 1, Some([7; 32]))]), Some([7; 32]));
    // Unmarked later on a sibling; marked again for a rolled key after that.
    let events = [mark(keys[0], 1, Some([7; 32])), mark(keys[1], 2, None)];
    assert_eq!(fold_all(&events), None);
    let events = [
        mark(keys[0], 1, Some([7; 32])),
        mark(keys[1], 2, None),
        mark(keys[2], 3, Some([8; 32])),
    ];
    assert_eq!(fold_all(&events), Some([8; 32]));
}

#[test]
fn a_message_a_sibling_logged_from_a_blocked_contact_is_dropped_until_unblocked() {
    let (_, keys) = three_devices();
    let received = |id: u8, text: &str| received(keys[1], id, u64::from(id), text);
    let blocked = |id: u8, blocked: bool| {
        event(
            keys[0],
            id,
            u64::from(id),
            EventKind::Blocked {
                contact: [1; 32],
                blocked,
            },
        )
    };
    let events = [
        received(1, "before"),
        blocked(2, true),
        received(3, "while blocked"),
        blocked(4, false),
        received(5, "after"),
    ];
    let shown: Vec<String> = folded_messages(&events)
        .into_iter()
        .map(|(text, _)| text)
        .collect();
    assert_eq!(shown, ["before", "after"]);
}

#[test]
fn a_rename_is_last_writer_wins_and_never_takes_another_contacts_alias() {
    let (_, keys) = three_devices();
    let key = epoch_key();
    let rename = |author, id, lamport, contact: u8, name: &str| {
        let e = event(
            author,
            id,
            lamport,
            EventKind::ContactUpserted {
                contact: [contact; 32],
                name: name.into(),
                details: None,
            },
        );
        Stored::seal(&key, &e, None, u64::from(id))
    };
    let newer = rename(keys[1], 1, 5, 1, "bob");
    let older = rename(keys[0], 2, 3, 1, "robert");
    let taken = rename(keys[0], 3, 6, 2, "bob");
    let (mut a, mut b) = (state(), state());
    fold(&mut a, &key, &[newer.clone(), older.clone(), taken.clone()]);
    fold(&mut b, &key, &[older, newer, taken]);
    for s in [&a, &b] {
        assert_eq!(s.contact(&[1; 32]).unwrap().alias, "bob");
        assert_eq!(s.contact_by_alias("bob"), Some(&[1; 32]));
        // Contact 2 asked for an alias contact 1 holds: it keeps its own (a clash
        // resolves in log order, which every device shares).
        assert_eq!(s.contact(&[2; 32]).unwrap().alias, "contact2");
    }
    assert_eq!(a.digest(), b.digest());
}

/// A logged one-time prekey, as a device mints it.
fn one_time_prekey(id: u32) -> PrekeySecret {
    let secret = OneTimePrekeySecret::generate(&mut StdRng::seed_from_u64(u64::from(id)));
    let public = secret.public_key().as_bytes().to_vec();
    let private = chorus_core::encode_wiped(&[], &PrekeyPrivate::OneTime(secret)).unwrap();
    PrekeySecret {
        id,
        kind: PrekeyKind::OneTime,
        last_resort: false,
        invitation: true,
        public,
        secret: SecretBytes::new(private.to_vec()),
    }
}

#[test]
fn prekeys_that_are_not_what_they_claim_are_refused() {
    let (_, keys) = three_devices();
    let key = epoch_key();
    let mut state = state();
    let mut garbage = one_time_prekey(1);
    garbage.secret = SecretBytes::new(vec![7; 40]);
    let mut mislabelled = one_time_prekey(2);
    mislabelled.kind = PrekeyKind::Signed;
    let log: Vec<Stored> = [garbage, mislabelled, one_time_prekey(3)]
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let e = event(
                keys[0],
                i as u8,
                1,
                EventKind::PrekeysCreated {
                    keys: vec![k],
                    invitation_mailbox: None,
                },
            );
            Stored::seal(&key, &e, None, i as u64)
        })
        .collect();
    let out = fold(&mut state, &key, &log);
    assert!(
        matches!(
            out[..],
            [
                Outcome::Refused(LogError::PrekeySecret),
                Outcome::Refused(LogError::PrekeySecret),
                Outcome::Applied(_)
            ]
        ),
        "{out:?}"
    );
}

/// What the property test's records do: commuting kinds, plus guarded records on two
/// streams (whose order within the stream the guard fixes).
fn kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (0usize..3, "[a-z]{1,6}").prop_map(|(c, name)| EventKind::ContactUpserted {
            contact: [CONTACTS[c]; 32],
            // Each contact's names are its own: an alias clash resolves in log order.
            name: format!("{c}{name}"),
            details: None,
        }),
        "[a-z]{1,6}".prop_map(|name| EventKind::ProfileUpdated { name }),
        (1usize..3).prop_map(|n| EventKind::RelaysUpdated {
            relays: (0..n).map(|i| format!("https://r{i}")).collect()
        }),
        (0usize..3, 0u64..20).prop_map(|(c, up_to)| EventKind::Read {
            contact: [CONTACTS[c]; 32],
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
        (0usize..3).prop_map(|c| EventKind::MailboxesReplaced {
            revocations: 0,
            mailboxes: vec![([CONTACTS[c]; 32], [0xA0 + CONTACTS[c]; 32])],
        }),
        any::<u8>().prop_map(|m| EventKind::PrekeysCreated {
            keys: vec![one_time_prekey(u32::from(m))],
            invitation_mailbox: Some([m; 32]),
        }),
    ]
}

proptest! {
    /// DESIGN's fold property, on the fold that ships: any interleaving of the same
    /// records that keeps each stream's order, with records shown twice, gives the
    /// same state and digest; only the repeats are set aside, and they change nothing.
    #[test]
    fn any_interleaving_of_the_same_records_gives_the_same_digest(
        raw in proptest::collection::vec((0usize..3, 0u64..5, 0usize..3, kind()), 1..24),
        order in any::<u64>(),
        repeats in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let (_, keys) = three_devices();
        let key = epoch_key();
        let tags = [[0xa0u8; 32], [0xb0; 32]];
        let mut heads = [StreamHead::default(); 2];
        let mut stream_of = Vec::new();
        let mut log = Vec::new();
        for (i, (who, lamport, stream, kind)) in raw.into_iter().enumerate() {
            let mut e = event(keys[who], i as u8, lamport, kind);
            let guard = (stream < 2).then(|| {
                e.chain.stream_prev = heads[stream].head;
                (tags[stream], heads[stream].version)
            });
            let s = Stored::seal(&key, &e, guard, i as u64);
            if stream < 2 {
                heads[stream] = heads[stream].advanced(s.hash());
            }
            stream_of.push(stream);
            log.push(s);
        }
        // Shuffle, then give each stream's slots back to its records in order.
        let mut slots: Vec<usize> = (0..log.len()).collect();
        let mut x = order | 1;
        for i in (1..slots.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            slots.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for stream in 0..2 {
            let mine: Vec<usize> = (0..log.len()).filter(|&i| stream_of[i] == stream).collect();
            let mut at = mine.iter();
            for s in slots.iter_mut().filter(|s| stream_of[**s] == stream) {
                *s = *at.next().unwrap();
            }
        }
        let mut shuffled: Vec<Stored> = slots.iter().map(|&i| log[i].clone()).collect();
        shuffled.extend(repeats.iter().map(|r| log[r.index(log.len())].clone()));

        let mut a = state();
        let out = fold(&mut a, &key, &log);
        prop_assert!(out.iter().all(|o| matches!(o, Outcome::Applied(_))), "{:?}", out);
        let mut b = state();
        let out = fold(&mut b, &key, &shuffled);
        let (first, again) = out.split_at(log.len());
        prop_assert!(first.iter().all(|o| matches!(o, Outcome::Applied(_))), "{:?}", first);
        // A repeat is a duplicate, or (guarded) refused because its stream moved on.
        prop_assert!(again.iter().all(|o| matches!(o, Outcome::Duplicate | Outcome::Refused(LogError::StreamVersion { .. }))), "{:?}", again);
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(a.profile_name(), b.profile_name());
        for c in CONTACTS {
            prop_assert_eq!(a.contact(&[c; 32]), b.contact(&[c; 32]));
        }
    }
}

/// Folds one record with the contact's session given, as the client does; returns the
/// outcome and the session as the fold left it.
fn fold_with_session(
    state: &mut Constellation,
    key: &EpochKey,
    record: &Stored,
    contact: [u8; 32],
    session: chorus_core::Session,
) -> (Outcome, chorus_core::Session) {
    let r = Record {
        seq: state.applied() + 1,
        epoch: 1,
        author: record.author,
        guard: record.guard.as_ref().map(|(t, v)| (&t[..], *v)),
        nonce: &record.nonce,
        ciphertext: &record.ciphertext,
    };
    let opened = vec![state.open(key, &r)];
    let mut sessions = Sessions::default();
    sessions.insert(contact, session);
    let mut folded = state.fold_page(key, &[r], opened, &mut sessions).unwrap();
    let session = sessions
        .changed()
        .next()
        .map(|(_, s)| common::copy(s))
        .expect("the send advanced the session");
    (folded.remove(0).outcome, session)
}

#[test]
fn a_send_is_planned_at_the_folded_version_and_a_sibling_planning_on_the_same_state_loses() {
    use chorus_core::{Outgoing, Recipient, session_stream};
    let key = epoch_key();
    let (_, devices) = three_devices();
    let mut pair = common::pair(5);
    let mut state = state();
    let contact = [CONTACTS[0]; 32];
    // The contact's mailbox is on the identity's own relay (`HOME`), or not.
    const HOME: &str = "https://relay.example";
    const ELSEWHERE: &str = "https://other.example";
    let to = |envelope_id, text| Outgoing {
        file: None,
        to: Recipient {
            root: contact,
            relay_url: HOME,
            mailbox: [4; 32],
        },
        envelope_id,
        text,
        hello: None,
        rolls: Vec::new(),
        roll_seen: None,
        name: None,
        timer: None,
        now_ms: 1000,
        fresh_step: false,
    };
    // Two devices plan on the same folded state and session: both name version 0.
    let (mut mine, mut theirs) = (common::copy(&pair.alice), common::copy(&pair.alice));
    let a = state
        .plan_send(&key, to([1; 16], "one"), HOME, &mut mine, &mut pair.rng)
        .unwrap();
    let b = state
        .plan_send(
            &key,
            to([2; 16], "two"),
            ELSEWHERE,
            &mut theirs,
            &mut pair.rng,
        )
        .unwrap();
    assert_eq!(a.stream, session_stream(&contact));
    assert_eq!((a.version, b.version), (0, 0));
    let EventKind::Sent(sent) = &a.event else {
        panic!("not a Sent event");
    };
    assert_eq!(
        (sent.contact, sent.mailbox, sent.text.as_str()),
        (contact, [4; 32], "one")
    );
    // The core decides the route: bundled with its record on our own relay, through
    // the outbox when our log is elsewhere.
    let EventKind::Sent(other) = &b.event else {
        panic!("not a Sent event");
    };
    assert!(
        sent.bundled,
        "a mailbox on our own relay travels with the record"
    );
    assert!(!other.bundled, "anywhere else it goes through the outbox");
    // The first is folded (the relay took it): the stream moves to version 1.
    let tag = key.stream_tag(&a.stream);
    let won = Stored::seal(&key, &event(devices[0], 10, 1, a.event), Some((tag, 0)), 1);
    let (outcome, folded_session) =
        fold_with_session(&mut state, &key, &won, contact, common::copy(&pair.alice));
    assert!(matches!(outcome, Outcome::Applied(_)), "the winner applies");
    // The loser's record at the same version is refused by every fold (a relay that
    // let it through is caught), and the next plan names version 1.
    let lost = Stored::seal(&key, &event(devices[1], 11, 1, b.event), Some((tag, 0)), 2);
    let r = Record {
        seq: state.applied() + 1,
        epoch: 1,
        author: lost.author,
        guard: Some((&tag[..], 0)),
        nonce: &lost.nonce,
        ciphertext: &lost.ciphertext,
    };
    let opened = vec![state.open(&key, &r)];
    let mut sessions = Sessions::default();
    sessions.insert(contact, common::copy(&folded_session));
    let outcome = state
        .fold_page(&key, &[r], opened, &mut sessions)
        .unwrap()
        .remove(0)
        .outcome;
    assert!(
        matches!(outcome, Outcome::Refused(LogError::StreamVersion { .. })),
        "a second send at one version is refused"
    );
    let mut again = common::copy(&folded_session);
    let c = state
        .plan_send(&key, to([2; 16], "two"), HOME, &mut again, &mut pair.rng)
        .unwrap();
    assert_eq!(c.version, 1);
}

#[test]
fn a_first_contact_is_proposed_as_a_creation_and_an_answer_the_contact_can_read() {
    use chorus_core::{EncryptedMessage, FirstContact, MessageKind, Proposal, propose_contact};
    use chorus_wire::{Envelope, FirstMessage, Hello, IdentityKeys, MailboxId, Payload};
    let mut pair = common::pair(6);
    let mut rng = StdRng::seed_from_u64(3);
    let root = RootSigningKey::generate(&mut rng);
    let identity = IdentityKeys::sign(
        &root,
        chorus_crypto::IdentityDhSecret::generate(&mut rng).public_key(),
    );
    let contact = *identity.root.as_bytes();
    let first = |session| FirstContact {
        session,
        identity: identity.clone(),
        hello: Hello {
            relay_url: "https://their.relay".into(),
            mailbox: MailboxId([7; 32]),
            name: "alice".into(),
        },
        first: FirstMessage {
            file: None,
            envelope_id: [1; 16],
            sent_ms: 5,
            text: "hi".into(),
        },
        consumed: vec![3],
    };
    let proposal = |at, read_only| Proposal {
        name: "alice".into(),
        invitation: None,
        at,
        read_only,
        ours: Hello {
            relay_url: "https://our.relay".into(),
            mailbox: MailboxId([8; 32]),
            name: "bob".into(),
        },
        answer_id: [2; 16],
        now_ms: 1000,
    };
    // A new contact: created at version 0, answered at version 1, on its stream.
    let events = propose_contact(
        first(common::copy(&pair.bob)),
        proposal(0, false),
        &mut pair.rng,
    )
    .unwrap();
    let guards: Vec<_> = events
        .iter()
        .map(|g| (g.stream.clone(), g.version))
        .collect();
    let stream = chorus_core::session_stream(&contact);
    assert_eq!(guards, vec![(stream.clone(), 0), (stream.clone(), 1)]);
    let EventKind::ContactUpserted {
        details: Some(d), ..
    } = &events[0].event
    else {
        panic!("not a creation");
    };
    assert_eq!((d.send_mailbox, d.recv_mailbox), ([7; 32], [8; 32]));
    assert_eq!(d.consumed_prekeys, vec![3]);
    // The answer goes to their mailbox and carries our hello, readable by the contact.
    let EventKind::Sent(sent) = &events[1].event else {
        panic!("not an answer");
    };
    assert_eq!((sent.mailbox, sent.envelope_id), ([7; 32], [2; 16]));
    let Envelope::Ratchet(bytes) = Envelope::decode(&sent.envelope).unwrap() else {
        panic!("the answer is a ratchet message");
    };
    let plain = pair
        .alice
        .decrypt(&EncryptedMessage {
            kind: MessageKind::Ratchet,
            bytes,
        })
        .unwrap();
    let hello = Payload::decode(&plain).unwrap().hello.unwrap();
    assert_eq!(hello.mailbox, MailboxId([8; 32]));
    // A handshake that lost is kept to read only: one event, no answer.
    let read_only = propose_contact(
        first(common::copy(&pair.bob)),
        proposal(4, true),
        &mut pair.rng,
    )
    .unwrap();
    assert_eq!(read_only.len(), 1);
    assert_eq!(read_only[0].version, 4);
}

/// A device that recovered the identity has nobody to let it in: its first record is
/// the root-signed entry authorizing itself, and the fold accepts exactly that — not
/// an entry it signed itself, nor a root-signed entry for another device.
#[test]
fn a_device_outside_the_roster_may_only_authorize_itself_with_the_root() {
    let (roster, _) = three_devices();
    // The roster's root: the first key its seed draws.
    let root = RootSigningKey::generate(&mut StdRng::seed_from_u64(11));
    assert_eq!(roster.root(), &root.public_key());
    let key = epoch_key();
    let mut state = state();
    let mut rng = StdRng::seed_from_u64(12);
    let newcomer = DeviceSigningKey::generate(&mut rng);
    let dh = DeviceDhSecret::generate(&mut rng).public_key();
    let me = *newcomer.public_key().as_bytes();
    let joining = |entry: &chorus_wire::RosterEntry, id: u8| {
        let e = event(
            me,
            id,
            u64::from(id),
            EventKind::Roster {
                entry: entry.as_bytes().to_vec(),
            },
        );
        Stored::seal(&key, &e, None, u64::from(id))
    };
    let body = chorus_wire::RosterBody::DeviceAuthorized {
        device: newcomer.public_key(),
        device_dh: dh,
        name: "thief".into(),
    };
    let self_signed = chorus_wire::RosterEntry::sign(
        LOG,
        roster.next_index(),
        Some(roster.head()),
        1,
        &body,
        |b| (me, newcomer.sign(chorus_wire::ROSTER_CONTEXT, b)),
    )
    .unwrap();
    let other = DeviceSigningKey::generate(&mut rng);
    let for_another = roster
        .authorize(
            &RosterSigner::Root(&root),
            other.public_key(),
            dh,
            "other",
            1,
        )
        .unwrap();
    let digest = state.digest();
    let out = fold(
        &mut state,
        &key,
        &[joining(&self_signed, 1), joining(&for_another, 2)],
    );
    assert!(
        matches!(
            out[..],
            [
                Outcome::Refused(LogError::UnknownAuthor),
                Outcome::Refused(LogError::UnknownAuthor)
            ]
        ),
        "{out:?}"
    );
    assert_eq!(state.digest(), digest, "refused: nothing changed");
    let by_root = roster
        .authorize(
            &RosterSigner::Root(&root),
            newcomer.public_key(),
            dh,
            "new laptop",
            1,
        )
        .unwrap();
    let out = fold(&mut state, &key, &[joining(&by_root, 3)]);
    assert!(
        matches!(&out[0], Outcome::Applied(e) if e.iter().any(|e| matches!(e, Effect::DeviceAuthorized { device, .. } if *device == me))),
        "{out:?}"
    );
    assert!(state.roster().is_authorized_id(&me));
}

/// `events` by `author` sealed on `state` as one append (`Constellation::seal_batch`,
/// the path the client and the simulator take), as the relay stores them.
fn appended(
    state: &Constellation,
    key: &EpochKey,
    author: [u8; 32],
    events: Vec<chorus_core::Pending>,
    seed: u64,
) -> Vec<Stored> {
    appended_at(state, key, author, events, 1000, seed)
}

/// [`appended`], on the author's clock at `now_ms`.
fn appended_at(
    state: &Constellation,
    key: &EpochKey,
    author: [u8; 32],
    events: Vec<chorus_core::Pending>,
    now_ms: u64,
    seed: u64,
) -> Vec<Stored> {
    state
        .seal_batch(
            key,
            author,
            events,
            now_ms,
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap()
        .into_iter()
        .map(|a| Stored {
            author,
            guard: a.guard,
            nonce: a.nonce,
            ciphertext: a.ciphertext,
        })
        .collect()
}

/// The state after the first of three devices set `strategy`, its key, and the first
/// two devices.
fn under(strategy: chorus_core::Strategy) -> (Constellation, EpochKey, [[u8; 32]; 2]) {
    let (_, keys) = three_devices();
    let key = epoch_key();
    let mut s = state();
    let set = appended(
        &s,
        &key,
        keys[0],
        vec![chorus_core::Pending::free(EventKind::StrategySet {
            strategy,
        })],
        1,
    );
    fold(&mut s, &key, &set);
    (s, key, [keys[0], keys[1]])
}

/// A lease of `term` until `expires_ms`, guarded on the lease stream as taken.
fn lease_event(term: u64, expires_ms: u64) -> chorus_core::Pending {
    chorus_core::Pending::guarded(
        EventKind::LeaderLease { term, expires_ms },
        chorus_core::LEASE_STREAM.to_vec(),
        None,
    )
}

fn take_lease(role: chorus_core::Role) -> chorus_core::Pending {
    match role {
        chorus_core::Role::TakeLease(p) => *p,
        other => panic!("expected to take the lease, got {other:?}"),
    }
}

#[test]
fn of_two_devices_taking_the_lease_at_once_one_holds_it_and_the_other_forwards_to_it() {
    use chorus_core::{LEASE_MS, LEASE_RENEW_MS, Lease, Role, Strategy};
    let (mut s, key, [a, b]) = under(Strategy::Leader);
    // Both see no lease and take one on the same folded state.
    let now = 5_000;
    let by_a = appended_at(&s, &key, a, vec![take_lease(s.send_role(&a, now))], now, 2);
    let by_b = appended_at(&s, &key, b, vec![take_lease(s.send_role(&b, now))], now, 3);
    let outcomes = fold(&mut s, &key, &[by_a[0].clone(), by_b[0].clone()]);
    assert!(matches!(outcomes[0], Outcome::Applied(_)));
    assert!(
        matches!(
            outcomes[1],
            Outcome::Refused(LogError::StreamVersion { .. })
        ),
        "{:?}",
        outcomes[1]
    );
    let lease = Lease {
        holder: a,
        term: 1,
        expires_ms: now + LEASE_MS,
    };
    assert_eq!(s.lease(), Some(lease));
    // While it holds, the holder encrypts and the others hand it their messages.
    assert_eq!(s.sender(now + 1), Some(a));
    assert_eq!(s.sender(lease.expires_ms), None, "run out");
    assert_eq!(s.send_role(&a, now + 1), Role::Encrypt);
    assert_eq!(s.send_role(&b, now + 1), Role::Forward { to: a });
    assert_eq!(
        s.send_role(&b, lease.expires_ms - 1),
        Role::Forward { to: a }
    );
    // The holder renews before it runs out; once it has, another device takes over.
    for (who, at) in [
        (a, lease.expires_ms - LEASE_RENEW_MS),
        (b, lease.expires_ms),
    ] {
        assert_eq!(
            take_lease(s.send_role(&who, at)),
            lease_event(2, at + LEASE_MS)
        );
    }
    let takeover = appended_at(
        &s,
        &key,
        b,
        vec![take_lease(s.send_role(&b, lease.expires_ms))],
        lease.expires_ms,
        4,
    );
    fold(&mut s, &key, &takeover);
    assert_eq!(s.lease().map(|l| (l.holder, l.term)), Some((b, 2)));
    assert_eq!(
        s.send_role(&a, lease.expires_ms + 1),
        Role::Forward { to: b }
    );
}

#[test]
fn a_lease_that_is_not_guarded_on_its_stream_or_skips_a_term_is_refused() {
    let (_, keys) = three_devices();
    let key = epoch_key();
    let mut s = state();
    let lease = |term| EventKind::LeaderLease {
        term,
        expires_ms: 9_000,
    };
    let stream = chorus_core::LEASE_STREAM.to_vec();
    let bad = [
        (chorus_core::Pending::free(lease(1)), "not guarded"),
        (
            chorus_core::Pending::guarded(lease(1), b"another stream".to_vec(), None),
            "not guarded",
        ),
        (
            chorus_core::Pending::guarded(lease(2), stream.clone(), None),
            "does not follow",
        ),
    ];
    for (i, (event, why)) in bad.into_iter().enumerate() {
        let before = s.digest();
        let r = appended(&s, &key, keys[0], vec![event], 10 + i as u64);
        match &fold(&mut s, &key, &r)[0] {
            Outcome::Refused(LogError::Lease(reason)) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{why}: {other:?}"),
        }
        assert_eq!(s.digest(), before, "{why}");
        assert_eq!(s.lease(), None);
    }
    let good = appended(
        &s,
        &key,
        keys[0],
        vec![chorus_core::Pending::guarded(lease(1), stream, None)],
        20,
    );
    assert!(matches!(fold(&mut s, &key, &good)[0], Outcome::Applied(_)));
    assert_eq!(s.lease().map(|l| l.term), Some(1));
}

#[test]
fn under_primary_the_device_that_set_it_encrypts_and_reads_and_its_siblings_forward() {
    use chorus_core::{Role, Strategy};
    let (_, keys) = three_devices();
    let (a, b) = (keys[0], keys[1]);
    let key = epoch_key();
    let mut s = state();
    // Under the default every device sends and reads for itself.
    for d in [a, b] {
        assert_eq!(s.send_role(&d, 1), Role::Encrypt);
        assert!(s.reads_contacts(&d) && !s.fans_out(&d));
    }
    assert_eq!(s.sender(1), None);
    let set = |s: &Constellation, author, strategy, seed| {
        appended(
            s,
            &key,
            author,
            vec![chorus_core::Pending::free(EventKind::StrategySet {
                strategy,
            })],
            seed,
        )
    };
    let by_b = set(&s, b, Strategy::Primary, 1);
    fold(&mut s, &key, &by_b);
    assert_eq!(s.primary(), Some(b));
    assert_eq!(s.sender(1), Some(b));
    assert_eq!(s.send_role(&a, 1), Role::Forward { to: b });
    assert_eq!(s.send_role(&b, 1), Role::Encrypt);
    assert!(!s.reads_contacts(&a) && !s.fans_out(&a));
    assert!(s.reads_contacts(&b) && s.fans_out(&b));
    // Setting it again on another device moves the role there.
    let by_a = set(&s, a, Strategy::Primary, 2);
    fold(&mut s, &key, &by_a);
    assert_eq!(s.primary(), Some(a));
    assert_eq!(s.send_role(&b, 1), Role::Forward { to: a });
}

#[test]
fn a_forward_request_folds_on_every_device_with_its_author_and_names_a_known_contact() {
    let (_, keys) = three_devices();
    let key = epoch_key();
    let mut s = state();
    let message = chorus_wire::FirstMessage {
        file: None,
        envelope_id: [7; 16],
        sent_ms: 900,
        text: "for the leader".into(),
    };
    let request = |contact| {
        chorus_core::Pending::free(EventKind::ForwardRequested {
            contact,
            message: message.clone(),
        })
    };
    let r = appended(&s, &key, keys[2], vec![request([1; 32])], 1);
    let Outcome::Applied(effects) = &fold(&mut s, &key, &r)[0] else {
        panic!("refused");
    };
    assert!(effects.iter().any(|e| matches!(e,
        Effect::ForwardRequested { alias, message: m, author }
            if alias == "contact1" && *m == message && *author == keys[2])));
    let before = s.digest();
    let r = appended(&s, &key, keys[2], vec![request([8; 32])], 2);
    assert!(matches!(
        fold(&mut s, &key, &r)[0],
        Outcome::Refused(LogError::UnknownContact)
    ));
    assert_eq!(s.digest(), before);
}

#[test]
fn a_lease_longer_than_the_rule_or_from_a_clock_far_ahead_does_not_hold_the_others_back() {
    use chorus_core::{LEASE_MS, Role, Strategy};
    let (mut s, key, [a, b]) = under(Strategy::Leader);
    // A lease that claims to last a year past its own clock (`appended` seals at 1,000).
    let year = 365 * 24 * 3_600_000;
    let long = appended(&s, &key, a, vec![lease_event(1, 1_000 + year)], 2);
    let before = s.digest();
    assert!(matches!(
        &fold(&mut s, &key, &long)[0],
        Outcome::Refused(LogError::Lease(r)) if r.contains("longer")
    ));
    assert_eq!(s.digest(), before);
    // A holder whose clock runs a year ahead takes a lease of the right length, in its
    // future: the others do not wait a year for it.
    let ahead = appended_at(&s, &key, a, vec![lease_event(1, year + LEASE_MS)], year, 3);
    assert!(matches!(fold(&mut s, &key, &ahead)[0], Outcome::Applied(_)));
    assert!(
        matches!(s.send_role(&b, 5_000), Role::TakeLease(_)),
        "{:?}",
        s.send_role(&b, 5_000)
    );
    // Up to the tolerated skew it holds; a millisecond earlier it does not.
    let edge = year - chorus_core::LEASE_MAX_SKEW_MS;
    assert_eq!(s.send_role(&b, edge), Role::Forward { to: a });
    assert_eq!(s.sender(edge), Some(a));
    assert!(matches!(s.send_role(&b, edge - 1), Role::TakeLease(_)));
    assert_eq!(s.sender(edge - 1), None);
}
