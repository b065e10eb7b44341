//! `primary-root`: a device that holds the identity DH key and the root-signed public
//! keys, but not the root signing key. It handshakes as the identity in both roles; it
//! cannot sign (prekeys, roster), and says so with a typed error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chorus_core::{LocalIdentity, MemoryPrekeyStore, SessionError, initiate, respond};
use chorus_crypto::{IdentityDhSecret, RootSigningKey};
use rand::SeedableRng;
use rand::rngs::StdRng;

mod common;
use common::bundle;

/// The primary (root and DH key) and a second device of the same identity (DH key and
/// the root-signed public keys only).
fn primary_and_device() -> (LocalIdentity, LocalIdentity) {
    let dh = |seed| IdentityDhSecret::generate(&mut StdRng::seed_from_u64(seed));
    let primary = LocalIdentity::from_parts(
        RootSigningKey::generate(&mut StdRng::seed_from_u64(1)),
        dh(2),
    );
    let device = LocalIdentity::without_root(primary.keys().clone(), dh(2)).unwrap();
    (primary, device)
}

#[test]
fn identity_keys_without_the_matching_dh_key_are_refused() {
    let (primary, _) = primary_and_device();
    let other = IdentityDhSecret::generate(&mut StdRng::seed_from_u64(3));
    assert!(LocalIdentity::without_root(primary.keys().clone(), other).is_none());
}

#[test]
fn a_device_without_the_root_cannot_sign_prekeys() {
    let (_, device) = primary_and_device();
    let mut rng = StdRng::seed_from_u64(4);
    let mut store = MemoryPrekeyStore::default();
    assert!(device.root().is_none());
    assert_eq!(
        store.new_signed_prekey(&device, &mut rng).err(),
        Some(SessionError::NoRootKey)
    );
    assert_eq!(
        store.new_pq_prekey(&device, true, &mut rng).err(),
        Some(SessionError::NoRootKey)
    );
}

#[test]
fn a_device_without_the_root_handshakes_as_the_identity_in_both_roles() {
    let (primary, device) = primary_and_device();
    let mut rng = StdRng::seed_from_u64(5);
    let carol = LocalIdentity::generate(&mut rng);

    // As initiator: carol's session pins the identity's keys (the primary's).
    let mut carol_store = MemoryPrekeyStore::default();
    let carol_bundle = bundle(&carol, &mut carol_store, &mut rng, true);
    let mut ours = initiate(&device, &carol_bundle, &mut rng).unwrap();
    let first = ours.encrypt(b"from the second device", &mut rng).unwrap();
    let mut answered = respond(&carol, &carol_store, &first.bytes).unwrap();
    assert_eq!(&answered.plaintext[..], b"from the second device");
    let reply = answered.session.encrypt(b"hi", &mut rng).unwrap();
    assert_eq!(&ours.decrypt(&reply).unwrap()[..], b"hi");

    // As responder: to prekeys the primary signed (shared through the log).
    let mut our_store = MemoryPrekeyStore::default();
    let our_bundle = bundle(&primary, &mut our_store, &mut rng, true);
    let mut theirs = initiate(&carol, &our_bundle, &mut rng).unwrap();
    let first = theirs.encrypt(b"to the identity", &mut rng).unwrap();
    let answered = respond(&device, &our_store, &first.bytes).unwrap();
    assert_eq!(&answered.plaintext[..], b"to the identity");
}
