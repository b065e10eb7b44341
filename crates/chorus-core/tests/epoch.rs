#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Epoch rotation in the fold (`chorus_core`'s `epoch` module): due after a revocation,
//! sealed to exactly the current devices, the only record of the next epoch under the
//! old key, and the end of the old epoch's records and streams.

use chorus_core::{
    Constellation, Effect, EpochKeyError, Folded, LogError, Outcome, ROSTER_STREAM, Record,
    RecordContext, Roster, RosterSigner, Sessions, open_epoch_key, seal_event,
};
use chorus_crypto::{DeviceDhSecret, DeviceSigningKey, EpochKey, RootSigningKey};
use chorus_wire::{EpochRotation, EventKind, LogEvent, SecurityLevel};
mod common;
use rand::SeedableRng;
use rand::rngs::StdRng;

const LOG: [u8; 32] = [3; 32];

static NEXT_ID: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);

/// A device's keys.
struct Dev {
    id: [u8; 32],
    dh: DeviceDhSecret,
}

/// Devices a, b and c; c revoked. The state before any record, at epoch 1.
fn a_revoked_device() -> (Constellation, [Dev; 3]) {
    a_revoked_device_at(1)
}

/// [`a_revoked_device`], the state at `epoch`.
fn a_revoked_device_at(epoch: u32) -> (Constellation, [Dev; 3]) {
    let mut rng = StdRng::seed_from_u64(5);
    let root = RootSigningKey::generate(&mut rng);
    let mut dev = || {
        let key = DeviceSigningKey::generate(&mut rng);
        let dh = DeviceDhSecret::generate(&mut rng);
        (key, dh)
    };
    let (a, b, c) = (dev(), dev(), dev());
    let signer = RosterSigner::Root(&root);
    let g = Roster::genesis(
        &root,
        LOG,
        a.0.public_key(),
        a.1.public_key(),
        SecurityLevel::SharedRoot,
        "a",
        0,
    )
    .unwrap();
    let mut roster = Roster::from_genesis(LOG, &g).unwrap();
    let mut entries = vec![g.as_bytes().to_vec()];
    for (name, d) in [("b", &b), ("c", &c)] {
        let e = roster
            .authorize(&signer, d.0.public_key(), d.1.public_key(), name, 0)
            .unwrap();
        roster.apply(&e).unwrap();
        entries.push(e.as_bytes().to_vec());
    }
    let e = roster.revoke(&signer, c.0.public_key(), 0).unwrap();
    entries.push(e.as_bytes().to_vec());
    let state = common::restored_at(LOG, epoch, entries, Vec::new());
    let devs = [a, b, c].map(|(k, dh)| Dev {
        id: *k.public_key().as_bytes(),
        dh,
    });
    (state, devs)
}

/// A record as the relay would show it.
struct Stored {
    epoch: u32,
    author: [u8; 32],
    guard: Option<([u8; 32], i64)>,
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
}

fn seal(
    key: &EpochKey,
    epoch: u32,
    author: &Dev,
    kind: EventKind,
    guard: Option<([u8; 32], i64)>,
) -> Stored {
    let event = LogEvent {
        event_id: [NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed); 16],
        lamport: 1,
        timestamp_ms: 1,
        author: author.id,
        chain: Default::default(),
        kind,
    };
    let context = RecordContext {
        log_id: LOG,
        epoch,
        author: author.id,
        guard: guard.as_ref().map(|(t, v)| (&t[..], *v)),
    };
    let r = seal_event(key, &context, &event, &mut StdRng::seed_from_u64(9)).unwrap();
    Stored {
        epoch,
        author: author.id,
        guard,
        nonce: r.nonce,
        ciphertext: r.ciphertext,
    }
}

/// Opens and folds `page` (after what `state` folded) with `key`, as the client does.
fn fold(state: &mut Constellation, key: &EpochKey, page: &[Stored]) -> Vec<Folded> {
    let first = state.applied() + 1;
    let records: Vec<Record<'_>> = page
        .iter()
        .enumerate()
        .map(|(i, s)| Record {
            seq: first + i as u64,
            epoch: s.epoch,
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
}

fn refused(folded: &[Folded]) -> Vec<&LogError> {
    folded
        .iter()
        .filter_map(|f| match &f.outcome {
            Outcome::Refused(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn rotation_of(kind: &EventKind) -> EpochRotation {
    match kind {
        EventKind::EpochRotated(r) => (**r).clone(),
        other => panic!("not a rotation: {other:?}"),
    }
}

fn profile(name: &str) -> EventKind {
    EventKind::ProfileUpdated { name: name.into() }
}

#[test]
fn a_revocation_makes_a_rotation_due_and_the_rotation_starts_an_epoch_only_the_others_can_read() {
    let (mut state, [a, b, c]) = a_revoked_device();
    let old = EpochKey::generate(&mut StdRng::seed_from_u64(1));
    assert!(state.rotation_due(1));
    let plan = state.plan_rotation(&old, &mut StdRng::seed_from_u64(2));
    let r = rotation_of(&plan.event);
    assert_eq!((r.epoch, r.revoked, r.keys.len()), (2, 1, 2));
    let roster_tag = old.stream_tag(ROSTER_STREAM);
    assert_eq!(plan.stream, ROSTER_STREAM);

    // Records the fold refuses before the rotation: another event under the next
    // epoch, and a rotation claiming the current one. Neither changes anything.
    let digest = state.digest();
    let out = fold(
        &mut state,
        &old,
        &[
            seal(&old, 2, &a, profile("early"), None),
            seal(
                &old,
                1,
                &a,
                plan.event.clone(),
                Some((roster_tag, plan.version)),
            ),
        ],
    );
    assert!(
        matches!(
            refused(&out)[..],
            [
                LogError::Epoch { held: 1, record: 2 },
                LogError::Epoch { held: 1, record: 1 }
            ]
        ),
        "{out:?}"
    );
    assert_eq!(state.digest(), digest);

    // The rotation, then a record of the new epoch in the same page: the fold stops
    // after the rotation, so the rest is opened again with the new key.
    let new_key = open_epoch_key(&LOG, &a.id, &a.dh, &r).unwrap();
    let page = [
        seal(
            &old,
            2,
            &a,
            plan.event.clone(),
            Some((roster_tag, plan.version)),
        ),
        seal(&new_key, 2, &b, profile("after"), None),
    ];
    let out = fold(&mut state, &old, &page);
    assert_eq!(out.len(), 1, "the fold stops at the rotation");
    assert!(matches!(
        &out[0].outcome,
        Outcome::Applied(e) if e.iter().any(|e| matches!(e, Effect::EpochRotated(_)))
    ));
    assert_eq!((state.epoch(), state.rotation_due(1)), (2, false));
    assert_eq!(
        state.stream(&roster_tag).version,
        0,
        "every stream starts again"
    );
    // b opens the same key from its own box; c, revoked, has none.
    let b_key = open_epoch_key(&LOG, &b.id, &b.dh, &r).unwrap();
    assert_eq!(b_key.commitment(), new_key.commitment());
    assert_eq!(
        open_epoch_key(&LOG, &c.id, &c.dh, &r).err(),
        Some(EpochKeyError::NotSealedToUs)
    );
    // The caller opens the rest of the page again with the new key.
    let out = fold(&mut state, &new_key, &page[1..]);
    assert!(refused(&out).is_empty(), "{out:?}");
    assert_eq!(state.profile_name(), Some("after"));

    // After it, the old key is good for nothing: a record sealed under it, at either
    // epoch, is refused.
    let digest = state.digest();
    let out = fold(
        &mut state,
        &new_key,
        &[
            seal(&old, 1, &a, profile("stale"), None),
            seal(&old, 2, &a, profile("forged"), None),
        ],
    );
    assert!(
        matches!(
            refused(&out)[..],
            [
                LogError::Epoch { held: 2, record: 1 },
                LogError::Undecryptable
            ]
        ),
        "{out:?}"
    );
    assert_eq!(state.digest(), digest);
}

#[test]
fn a_rotation_that_leaves_out_a_device_or_seals_to_a_revoked_one_is_refused() {
    let (state, [a, b, c]) = a_revoked_device();
    let old = EpochKey::generate(&mut StdRng::seed_from_u64(1));
    let plan = state.plan_rotation(&old, &mut StdRng::seed_from_u64(2));
    let good = rotation_of(&plan.event);
    let tag = old.stream_tag(ROSTER_STREAM);
    let mut without_b = good.clone();
    without_b.keys.retain(|(d, _)| *d != b.id);
    let mut with_c = good.clone();
    with_c.keys.push((c.id, good.keys[0].1.clone()));
    let mut twice = without_b.clone();
    twice.keys.push(good.keys[0].clone());
    let mut miscounted = good.clone();
    miscounted.revoked = 0;
    for bad in [without_b, with_c, twice, miscounted] {
        let mut s = state.clone();
        let digest = s.digest();
        let out = fold(
            &mut s,
            &old,
            &[seal(
                &old,
                2,
                &a,
                EventKind::EpochRotated(Box::new(bad)),
                Some((tag, plan.version)),
            )],
        );
        assert!(
            matches!(refused(&out)[..], [LogError::Rotation(_)]),
            "{out:?}"
        );
        assert_eq!((s.digest(), s.epoch()), (digest, 1));
    }
}

#[test]
fn a_box_moved_to_another_device_or_a_key_other_than_the_committed_one_is_not_taken() {
    let (state, [a, b, _]) = a_revoked_device();
    let old = EpochKey::generate(&mut StdRng::seed_from_u64(1));
    let good = rotation_of(
        &state
            .plan_rotation(&old, &mut StdRng::seed_from_u64(2))
            .event,
    );
    // b's box under a's name: bound to b, it does not open as a's.
    let mut moved = good.clone();
    let b_box = moved
        .keys
        .iter()
        .find(|(d, _)| *d == b.id)
        .unwrap()
        .1
        .clone();
    for (d, sealed) in &mut moved.keys {
        if *d == a.id {
            *sealed = b_box.clone();
        }
    }
    assert_eq!(
        open_epoch_key(&LOG, &a.id, &a.dh, &moved).err(),
        Some(EpochKeyError::Unopenable)
    );
    // A sibling that commits to one key and seals another.
    let mut lying = good;
    lying.commitment = [0; 32];
    assert_eq!(
        open_epoch_key(&LOG, &a.id, &a.dh, &lying).err(),
        Some(EpochKeyError::Commitment)
    );
}

#[test]
fn an_epoch_a_week_old_is_due_for_rotation_and_the_rotation_starts_the_week_again() {
    let (mut state, [a, ..]) = a_revoked_device();
    let old = EpochKey::generate(&mut StdRng::seed_from_u64(1));
    let plan = state.plan_rotation(&old, &mut StdRng::seed_from_u64(2));
    let tag = old.stream_tag(ROSTER_STREAM);
    let rotation = seal(&old, 2, &a, plan.event, Some((tag, plan.version)));
    fold(&mut state, &old, &[rotation]);
    // The week starts at the rotation's author clock (1 ms here).
    let (since, week) = (state.epoch_since_ms(), chorus_core::EPOCH_LIFETIME_MS);
    assert_eq!(since, 1);
    assert!(!state.rotation_due(since + week - 1));
    assert!(state.rotation_due(since + week));
}

#[test]
fn at_the_last_epoch_a_rotation_cannot_keep_the_number() {
    // No next epoch exists: a "rotation" would put a second key under the same number.
    let (mut state, [a, ..]) = a_revoked_device_at(u32::MAX);
    let old = EpochKey::generate(&mut StdRng::seed_from_u64(1));
    let plan = state.plan_rotation(&old, &mut StdRng::seed_from_u64(2));
    let tag = old.stream_tag(ROSTER_STREAM);
    let digest = state.digest();
    let out = fold(
        &mut state,
        &old,
        &[seal(
            &old,
            u32::MAX,
            &a,
            plan.event,
            Some((tag, plan.version)),
        )],
    );
    assert!(
        matches!(refused(&out)[..], [LogError::Rotation(_)]),
        "{out:?}"
    );
    assert_eq!(state.digest(), digest);
}

#[test]
fn a_revocation_makes_a_renewal_due_until_one_lands_and_a_renewal_cannot_claim_more() {
    let (state, [a, _, _]) = a_revoked_device();
    assert!(
        state.renewal_due(),
        "the revoked device knew the prekeys and mailboxes"
    );
    let key = EpochKey::generate(&mut StdRng::seed_from_u64(1));
    let tag = key.stream_tag(ROSTER_STREAM);
    let plan = state.plan_renewal(&key, &mut StdRng::seed_from_u64(2));
    assert_eq!(
        plan.len(),
        1,
        "no contact: one empty renewal still marks it done"
    );

    // A renewal claiming revocations the roster never made is refused, changing nothing.
    let mut s = state.clone();
    let digest = s.digest();
    let claims_more = EventKind::MailboxesReplaced {
        revocations: 2,
        mailboxes: Vec::new(),
    };
    let out = fold(
        &mut s,
        &key,
        &[seal(&key, 1, &a, claims_more, Some((tag, 0)))],
    );
    assert!(
        matches!(refused(&out)[..], [LogError::Renewal(_)]),
        "{out:?}"
    );
    assert_eq!(s.digest(), digest);
    assert!(s.renewal_due());

    // The planned one lands; the next device to sync has nothing left to renew, and a
    // second renewal planned on the old state loses its guard.
    let mut s = state.clone();
    let landed = plan
        .iter()
        .map(|g| seal(&key, 1, &a, g.event.clone(), Some((tag, g.version))))
        .collect::<Vec<_>>();
    let out = fold(&mut s, &key, &landed);
    assert!(refused(&out).is_empty(), "{out:?}");
    assert!(!s.renewal_due());
    assert_eq!(s.renewed(), 1);
    let late = state.plan_renewal(&key, &mut StdRng::seed_from_u64(3));
    let out = fold(
        &mut s,
        &key,
        &[seal(
            &key,
            1,
            &a,
            late[0].event.clone(),
            Some((tag, late[0].version)),
        )],
    );
    assert_eq!(refused(&out).len(), 1, "{out:?}");
}
