#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The roster chain: a valid chain builds the same roster on every device; every
//! forged, replayed, reordered or unauthorised entry is refused with a typed error and
//! changes nothing.

use chorus_core::{MAX_DEVICES, Roster, RosterError, RosterSigner};
use chorus_crypto::{DeviceDhSecret, DeviceSigningKey, RootSigningKey};
use chorus_wire::{RosterBody, RosterEntry, SecurityLevel, WireError};
use rand::SeedableRng;
use rand::rngs::StdRng;

const LOG: [u8; 32] = [7; 32];

struct Identity {
    root: RootSigningKey,
    primary: DeviceSigningKey,
    roster: Roster,
    chain: Vec<Vec<u8>>,
    rng: StdRng,
}

fn identity(level: SecurityLevel) -> Identity {
    let mut rng = StdRng::seed_from_u64(5);
    let root = RootSigningKey::generate(&mut rng);
    let primary = DeviceSigningKey::generate(&mut rng);
    let dh = DeviceDhSecret::generate(&mut rng).public_key();
    let genesis =
        Roster::genesis(&root, LOG, primary.public_key(), dh, level, "laptop", 1).unwrap();
    let roster = Roster::from_genesis(LOG, &genesis).unwrap();
    Identity {
        root,
        primary,
        roster,
        chain: vec![genesis.as_bytes().to_vec()],
        rng,
    }
}

impl Identity {
    fn new_device(&mut self) -> (DeviceSigningKey, chorus_crypto::DeviceDhPublic) {
        (
            DeviceSigningKey::generate(&mut self.rng),
            DeviceDhSecret::generate(&mut self.rng).public_key(),
        )
    }

    /// A phone the root authorizes (applied), with its X25519 secret: what opens the
    /// boxes sealed to it.
    fn phone(&mut self) -> (DeviceSigningKey, DeviceDhSecret) {
        let phone = DeviceSigningKey::generate(&mut self.rng);
        let phone_dh = DeviceDhSecret::generate(&mut self.rng);
        let e = self
            .roster
            .authorize(
                &RosterSigner::Root(&self.root),
                phone.public_key(),
                phone_dh.public_key(),
                "phone",
                2,
            )
            .unwrap();
        self.roster.apply(&e).unwrap();
        (phone, phone_dh)
    }

    fn add(&mut self, name: &str) -> RosterEntry {
        let (d, dh) = self.new_device();
        let e = self
            .roster
            .authorize(&RosterSigner::Root(&self.root), d.public_key(), dh, name, 2)
            .unwrap();
        self.roster.apply(&e).unwrap();
        self.chain.push(e.as_bytes().to_vec());
        e
    }
}

/// Signs an arbitrary entry with an arbitrary key (a forger's tool).
fn forge(
    index: u64,
    prev: Option<[u8; 32]>,
    log: [u8; 32],
    key: &DeviceSigningKey,
    rng: &mut StdRng,
) -> RosterEntry {
    let body = RosterBody::DeviceAuthorized {
        device: DeviceSigningKey::generate(rng).public_key(),
        device_dh: DeviceDhSecret::generate(rng).public_key(),
        name: "evil".into(),
    };
    RosterEntry::sign(log, index, prev, 3, &body, |b| {
        (
            *key.public_key().as_bytes(),
            key.sign(chorus_wire::ROSTER_CONTEXT, b),
        )
    })
    .unwrap()
}

fn refused(roster: &mut Roster, entry: &RosterEntry, expected: RosterError) {
    let before = roster.clone();
    assert_eq!(roster.apply(entry), Err(expected));
    assert_eq!(*roster, before, "a refused entry changes nothing");
}

#[test]
fn a_valid_chain_builds_the_same_roster_on_a_catching_up_device() {
    let mut id = identity(SecurityLevel::SharedRoot);
    id.add("phone");
    id.add("tablet");
    let rebuilt = Roster::validate_chain(LOG, &id.chain).unwrap();
    assert_eq!(rebuilt, id.roster);
    let names: Vec<&str> = rebuilt.devices().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["laptop", "phone", "tablet"]);
    assert_eq!(rebuilt.next_index(), 3);
}

#[test]
fn a_replayed_or_reordered_entry_is_refused() {
    let mut id = identity(SecurityLevel::SharedRoot);
    let first = id.add("phone");
    let index = first.index;
    refused(
        &mut id.roster,
        &first,
        RosterError::OutOfOrder { index, expected: 2 },
    );
    let mut chain = id.chain.clone();
    chain.push(id.chain[1].clone());
    assert!(matches!(
        Roster::validate_chain(LOG, &chain),
        Err(RosterError::OutOfOrder { .. })
    ));
}

#[test]
fn a_broken_hash_chain_is_refused() {
    let mut id = identity(SecurityLevel::SharedRoot);
    let (d, dh) = id.new_device();
    let body = RosterBody::DeviceAuthorized {
        device: d.public_key(),
        device_dh: dh,
        name: "phone".into(),
    };
    let root = &id.root;
    let e = RosterEntry::sign(LOG, 1, Some([0; 32]), 2, &body, |b| {
        (
            *root.public_key().as_bytes(),
            root.sign(chorus_wire::ROSTER_CONTEXT, b),
        )
    })
    .unwrap();
    refused(&mut id.roster, &e, RosterError::BrokenChain { index: 1 });
}

#[test]
fn a_bad_signature_is_refused_before_the_entry_exists() {
    let mut id = identity(SecurityLevel::SharedRoot);
    id.add("phone");
    let mut bytes = id.chain[1].clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // inside the signature
    assert_eq!(
        RosterEntry::decode(&bytes),
        Err(WireError::BadSignature("roster entry"))
    );
    let mut chain = id.chain.clone();
    chain[1] = bytes;
    assert_eq!(
        Roster::validate_chain(LOG, &chain),
        Err(RosterError::Wire(WireError::BadSignature("roster entry")))
    );
}

#[test]
fn an_unknown_key_or_a_non_primary_device_may_not_sign() {
    let mut id = identity(SecurityLevel::SharedRoot);
    let stranger = DeviceSigningKey::generate(&mut id.rng);
    let head = Some(id.roster.head());
    let e = forge(1, head, LOG, &stranger, &mut id.rng);
    refused(
        &mut id.roster,
        &e,
        RosterError::UnauthorizedSigner { index: 1 },
    );
    // In shared-root even the first device signs with the root, not its own key.
    let own = forge(1, head, LOG, &id.primary, &mut id.rng);
    refused(
        &mut id.roster,
        &own,
        RosterError::UnauthorizedSigner { index: 1 },
    );
}

#[test]
fn in_primary_root_the_primary_device_manages_the_roster_and_no_other_device_does() {
    let mut id = identity(SecurityLevel::PrimaryRoot);
    let (d, dh) = id.new_device();
    let e = id
        .roster
        .authorize(
            &RosterSigner::PrimaryDevice(&id.primary),
            d.public_key(),
            dh,
            "phone",
            2,
        )
        .unwrap();
    id.roster.apply(&e).unwrap();
    id.chain.push(e.as_bytes().to_vec());
    // The phone is authorized, but may not authorize others.
    let head = Some(id.roster.head());
    let by_phone = forge(2, head, LOG, &d, &mut id.rng);
    refused(
        &mut id.roster,
        &by_phone,
        RosterError::UnauthorizedSigner { index: 2 },
    );
    assert_eq!(Roster::validate_chain(LOG, &id.chain).unwrap(), id.roster);
}

#[test]
fn an_entry_for_another_log_a_second_genesis_and_a_duplicate_device_are_refused() {
    let mut id = identity(SecurityLevel::SharedRoot);
    let head = Some(id.roster.head());
    // Signed by the root, but for another log.
    let (d, dh) = id.new_device();
    let body = RosterBody::DeviceAuthorized {
        device: d.public_key(),
        device_dh: dh,
        name: "x".into(),
    };
    let root = &id.root;
    let sign = |b: &[u8]| {
        (
            *root.public_key().as_bytes(),
            root.sign(chorus_wire::ROSTER_CONTEXT, b),
        )
    };
    let other_log = RosterEntry::sign([8; 32], 1, head, 2, &body, sign).unwrap();
    refused(
        &mut id.roster,
        &other_log,
        RosterError::WrongLog { index: 1 },
    );
    // A second genesis.
    let g = Roster::genesis(
        &id.root,
        LOG,
        d.public_key(),
        dh,
        SecurityLevel::SharedRoot,
        "again",
        2,
    )
    .unwrap();
    let regenesis = RosterEntry::sign(LOG, 1, head, 2, &g.body, sign).unwrap();
    refused(
        &mut id.roster,
        &regenesis,
        RosterError::SecondGenesis { index: 1 },
    );
    // The first device again.
    let first = &id.roster.devices()[0];
    let dup = RosterBody::DeviceAuthorized {
        device: first.key,
        device_dh: first.dh,
        name: "laptop".into(),
    };
    let dup = RosterEntry::sign(LOG, 1, head, 2, &dup, sign).unwrap();
    refused(
        &mut id.roster,
        &dup,
        RosterError::DuplicateDevice { index: 1 },
    );
    // A chain that does not start with a genesis.
    id.add("phone");
    assert_eq!(
        Roster::validate_chain(LOG, &id.chain[1..]),
        Err(RosterError::NotGenesis)
    );
    assert_eq!(
        Roster::validate_chain(LOG, &[]),
        Err(RosterError::NotGenesis)
    );
}

#[test]
fn the_roster_holds_at_most_max_devices() {
    let mut id = identity(SecurityLevel::SharedRoot);
    for i in 1..MAX_DEVICES {
        id.add(&format!("d{i}"));
    }
    assert_eq!(id.roster.devices().len(), MAX_DEVICES);
    let (d, dh) = id.new_device();
    let err = id
        .roster
        .authorize(
            &RosterSigner::Root(&id.root),
            d.public_key(),
            dh,
            "one too many",
            2,
        )
        .unwrap_err();
    assert_eq!(
        err,
        RosterError::TooManyDevices {
            index: MAX_DEVICES as u64
        }
    );
}

#[test]
fn a_revoked_device_leaves_the_roster_and_can_never_join_again() {
    let mut id = identity(SecurityLevel::SharedRoot);
    let phone = id.add("phone");
    let RosterBody::DeviceAuthorized {
        device, device_dh, ..
    } = phone.body
    else {
        panic!("an authorization")
    };
    let revoke = id
        .roster
        .revoke(&RosterSigner::Root(&id.root), device, 3)
        .unwrap();
    id.roster.apply(&revoke).unwrap();
    id.chain.push(revoke.as_bytes().to_vec());
    assert!(!id.roster.is_authorized(&device));
    assert!(id.roster.is_revoked(&device));
    assert_eq!(
        Roster::validate_chain(LOG, &id.chain).unwrap(),
        id.roster,
        "a catching-up device sees the revocation too"
    );
    // Its key may be in a thief's hands: the root cannot let it back in.
    assert_eq!(
        id.roster
            .authorize(&RosterSigner::Root(&id.root), device, device_dh, "phone", 4)
            .unwrap_err(),
        RosterError::RevokedDevice { index: 3 }
    );
    assert_eq!(
        id.roster
            .revoke(&RosterSigner::Root(&id.root), device, 4)
            .unwrap_err(),
        RosterError::UnknownDevice { index: 3 }
    );
}

#[test]
fn a_secondary_cannot_revoke_the_primary_and_nobody_revokes_the_last_device() {
    let mut id = identity(SecurityLevel::PrimaryRoot);
    let (phone, phone_dh) = id.new_device();
    let e = id
        .roster
        .authorize(
            &RosterSigner::PrimaryDevice(&id.primary),
            phone.public_key(),
            phone_dh,
            "phone",
            2,
        )
        .unwrap();
    id.roster.apply(&e).unwrap();
    let primary = id.primary.public_key();
    // The phone signs the revocation of the primary with its own key.
    let body = RosterBody::DeviceRevoked { device: primary };
    let head = id.roster.head();
    let forged = RosterEntry::sign(LOG, 2, Some(head), 3, &body, |b| {
        (
            *phone.public_key().as_bytes(),
            phone.sign(chorus_wire::ROSTER_CONTEXT, b),
        )
    })
    .unwrap();
    refused(
        &mut id.roster,
        &forged,
        RosterError::UnauthorizedSigner { index: 2 },
    );
    // Even the root may not revoke the device that holds it.
    assert_eq!(
        id.roster
            .revoke(&RosterSigner::Root(&id.root), primary, 3)
            .unwrap_err(),
        RosterError::Irrevocable { index: 2 }
    );
    let alone = identity(SecurityLevel::SharedRoot);
    let only = alone.primary.public_key();
    assert_eq!(
        alone
            .roster
            .revoke(&RosterSigner::Root(&alone.root), only, 3)
            .unwrap_err(),
        RosterError::Irrevocable { index: 1 }
    );
}

#[test]
fn only_the_root_moves_the_primary_sets_the_recovery_key_or_changes_the_level() {
    let mut id = identity(SecurityLevel::PrimaryRoot);
    let (phone, phone_dh) = id.new_device();
    let e = id
        .roster
        .authorize(
            &RosterSigner::Root(&id.root),
            phone.public_key(),
            phone_dh,
            "phone",
            2,
        )
        .unwrap();
    id.roster.apply(&e).unwrap();
    let head = id.roster.head();
    // The primary's own key may authorize devices, but not move the primary away
    // from itself or back to itself once moved (a thief holding it must not).
    for body in [
        RosterBody::PrimaryMoved {
            device: phone.public_key(),
        },
        RosterBody::RecoveryKeySet {
            key: DeviceDhSecret::generate(&mut id.rng).public_key(),
            slot: [3; 32],
            kit: [4; 32],
        },
        RosterBody::LevelChanged {
            level: SecurityLevel::SharedRoot,
            primary: None,
        },
    ] {
        let forged = RosterEntry::sign(LOG, 2, Some(head), 3, &body, |b| {
            (
                *id.primary.public_key().as_bytes(),
                id.primary.sign(chorus_wire::ROSTER_CONTEXT, b),
            )
        })
        .unwrap();
        refused(
            &mut id.roster,
            &forged,
            RosterError::UnauthorizedSigner { index: 2 },
        );
    }
    // The root moves it; from then on the old primary may be revoked and its key
    // signs nothing.
    let old = id.primary.public_key();
    let moved = id
        .roster
        .move_primary(&id.root, phone.public_key(), 3)
        .unwrap();
    id.roster.apply(&moved).unwrap();
    assert_eq!(id.roster.primary(), Some(&phone.public_key()));
    let by_old = id
        .roster
        .authorize(
            &RosterSigner::PrimaryDevice(&id.primary),
            DeviceSigningKey::generate(&mut id.rng).public_key(),
            DeviceDhSecret::generate(&mut id.rng).public_key(),
            "rogue",
            4,
        )
        .unwrap_err();
    assert_eq!(by_old, RosterError::UnauthorizedSigner { index: 3 });
    let revoked = id
        .roster
        .revoke(&RosterSigner::Root(&id.root), old, 4)
        .unwrap();
    id.roster.apply(&revoked).unwrap();
    // Moving the primary to a device the roster does not hold, or changing to the
    // level already in force, is refused.
    assert_eq!(
        id.roster.move_primary(&id.root, old, 5).unwrap_err(),
        RosterError::UnknownDevice { index: 4 }
    );
    assert_eq!(
        id.roster
            .change_level(&id.root, Some(phone.public_key()), 5)
            .unwrap_err(),
        RosterError::WrongLevel { index: 4 }
    );
    let shared = id.roster.change_level(&id.root, None, 5).unwrap();
    id.roster.apply(&shared).unwrap();
    assert_eq!(id.roster.level(), SecurityLevel::SharedRoot);
    assert_eq!(id.roster.primary(), None);
    // In shared-root there is no primary to move.
    assert_eq!(
        id.roster
            .move_primary(&id.root, phone.public_key(), 6)
            .unwrap_err(),
        RosterError::WrongLevel { index: 5 }
    );
}

#[test]
fn a_shared_root_opens_only_in_its_devices_box_and_only_as_the_identitys_root() {
    let mut id = identity(SecurityLevel::SharedRoot);
    let (phone, phone_dh) = id.phone();
    let me = *phone.public_key().as_bytes();
    let chorus_wire::EventKind::RootShared { keys } = id.roster.share_root(&id.root, &mut id.rng)
    else {
        panic!("share_root makes a RootShared record");
    };
    assert_eq!(keys.len(), 2, "one box per current device");
    let opened = chorus_core::open_shared_root(&id.roster, &me, &phone_dh, &keys).unwrap();
    assert_eq!(opened.public_key(), id.root.public_key());
    // Another device's key opens nothing; a sibling handing out another root as the
    // identity's is refused.
    let stranger = DeviceDhSecret::generate(&mut id.rng);
    assert!(chorus_core::open_shared_root(&id.roster, &me, &stranger, &keys).is_none());
    let impostor = RootSigningKey::generate(&mut id.rng);
    let chorus_wire::EventKind::RootShared { keys: forged } =
        id.roster.share_root(&impostor, &mut id.rng)
    else {
        panic!("share_root makes a RootShared record");
    };
    assert!(chorus_core::open_shared_root(&id.roster, &me, &phone_dh, &forged).is_none());
}

/// Signs a roster entry's bytes: the signer's key and its signature.
type Sign<'a> = &'a dyn Fn(&[u8]) -> ([u8; 32], chorus_crypto::Signature);

/// A roll entry of `roster` from `old` to a fresh identity, signed by `signer`.
fn roll_entry(
    roster: &Roster,
    old: &RootSigningKey,
    new: &RootSigningKey,
    dh: &chorus_crypto::IdentityDhSecret,
    signer: Sign<'_>,
) -> RosterEntry {
    let keys = chorus_wire::IdentityKeys::sign(new, dh.public_key());
    let body = RosterBody::RootRolled {
        roll: chorus_wire::IdentityRoll::sign(old, new, keys),
    };
    RosterEntry::sign(
        LOG,
        roster.next_index(),
        Some(roster.head()),
        3,
        &body,
        signer,
    )
    .unwrap()
}

#[test]
fn a_roll_is_signed_by_the_root_it_leaves_and_then_only_the_new_root_signs() {
    let mut id = identity(SecurityLevel::PrimaryRoot);
    let (new, dh) = (
        RootSigningKey::generate(&mut id.rng),
        chorus_crypto::IdentityDhSecret::generate(&mut id.rng),
    );
    let by = |k: &RootSigningKey| {
        let k = RootSigningKey::from_secret_bytes(&k.to_secret_bytes());
        move |b: &[u8]| {
            (
                *k.public_key().as_bytes(),
                k.sign(chorus_wire::ROSTER_CONTEXT, b),
            )
        }
    };
    let primary = DeviceSigningKey::from_secret_bytes(&id.primary.to_secret_bytes());
    let by_primary = move |b: &[u8]| {
        (
            *primary.public_key().as_bytes(),
            primary.sign(chorus_wire::ROSTER_CONTEXT, b),
        )
    };
    // The primary's device key manages devices, but never moves the root.
    let e = roll_entry(&id.roster, &id.root, &new, &dh, &by_primary);
    assert!(matches!(
        id.roster.apply(&e),
        Err(RosterError::UnauthorizedSigner { .. })
    ));
    // A statement from another root than the identity's, in an entry the root signed.
    let elsewhere = RootSigningKey::generate(&mut id.rng);
    let e = roll_entry(&id.roster, &elsewhere, &new, &dh, &by(&id.root));
    assert!(matches!(
        id.roster.apply(&e),
        Err(RosterError::RollFromElsewhere { .. })
    ));
    assert_eq!(*id.roster.root(), id.root.public_key(), "nothing changed");

    let rolled = id.roster.roll(&id.root, &new, &dh, 3).unwrap();
    id.roster.apply(&rolled).unwrap();
    assert_eq!(*id.roster.root(), new.public_key());
    assert_eq!(id.roster.identity().unwrap().dh, dh.public_key());
    assert_eq!(id.roster.rolls().len(), 1);
    // The old root signs nothing more; the new one does.
    let (phone, phone_dh) = id.new_device();
    assert!(matches!(
        id.roster.authorize(
            &RosterSigner::Root(&id.root),
            phone.public_key(),
            phone_dh,
            "p",
            4
        ),
        Err(RosterError::UnauthorizedSigner { .. })
    ));
    let e = id
        .roster
        .authorize(
            &RosterSigner::Root(&new),
            phone.public_key(),
            phone_dh,
            "p",
            4,
        )
        .unwrap();
    id.roster.apply(&e).unwrap();
    // A replay of the roll, and a second roll from the old root, are refused.
    let again = roll_entry(&id.roster, &id.root, &new, &dh, &by(&id.root));
    assert!(id.roster.apply(&again).is_err());
    // A device catching up validates the chain across the roll to the same roster.
    let chain = [
        id.chain[0].clone(),
        rolled.as_bytes().to_vec(),
        e.as_bytes().to_vec(),
    ];
    assert_eq!(Roster::validate_chain(LOG, &chain).unwrap(), id.roster);
}

#[test]
fn a_rolled_identity_opens_only_in_its_devices_box_and_the_root_only_for_root_holders() {
    for level in [SecurityLevel::SharedRoot, SecurityLevel::PrimaryRoot] {
        let mut id = identity(level);
        let (phone, phone_dh) = id.phone();
        let (new, dh) = (
            RootSigningKey::generate(&mut id.rng),
            chorus_crypto::IdentityDhSecret::generate(&mut id.rng),
        );
        let e = id.roster.roll(&id.root, &new, &dh, 3).unwrap();
        id.roster.apply(&e).unwrap();
        let chorus_wire::EventKind::IdentityShared { keys } =
            id.roster.share_identity(&new, &dh, &mut id.rng)
        else {
            panic!("share_identity makes an IdentityShared record");
        };
        assert_eq!(keys.len(), 2, "one box per current device");
        let me = *phone.public_key().as_bytes();
        let opened = chorus_core::open_shared_identity(&id.roster, &me, &phone_dh, &keys).unwrap();
        assert_eq!(opened.dh.public_key(), dh.public_key());
        // In primary-root the phone is not the primary: it gets the DH key alone.
        assert_eq!(
            opened.root.map(|r| r.public_key()),
            (level == SecurityLevel::SharedRoot).then(|| new.public_key())
        );
        // Another device's key opens nothing; secrets that are not the roll's are refused.
        let stranger = DeviceDhSecret::generate(&mut id.rng);
        assert!(chorus_core::open_shared_identity(&id.roster, &me, &stranger, &keys).is_none());
        let other = chorus_crypto::IdentityDhSecret::generate(&mut id.rng);
        let chorus_wire::EventKind::IdentityShared { keys: forged } =
            id.roster.share_identity(&new, &other, &mut id.rng)
        else {
            panic!("share_identity makes an IdentityShared record");
        };
        assert!(chorus_core::open_shared_identity(&id.roster, &me, &phone_dh, &forged).is_none());
    }
}
