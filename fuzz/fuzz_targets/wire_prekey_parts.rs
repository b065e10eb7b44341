//! Decoding arbitrary bytes as a standalone `OneTimePrekey`, `SignedPrekey` or `PqPrekey`
//! (the signed ones verified under a fixed root key) never panics; a successful decode
//! re-encodes to something that decodes to the same value.
#![no_main]

use std::sync::OnceLock;

use chorus_crypto::{RootPublicKey, RootSigningKey};
use chorus_wire::{OneTimePrekey, PqPrekey, SignedPrekey};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fn root() -> &'static RootPublicKey {
    static ROOT: OnceLock<RootPublicKey> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        RootSigningKey::generate(&mut rng).public_key()
    })
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    if let Ok(v) = OneTimePrekey::decode(data) {
        let again = OneTimePrekey::decode(&v.encode()).expect("re-encoded one-time prekey decodes");
        assert_eq!(again, v);
    }
    // Without the root's secret key these should never verify; if one does, it must still
    // round-trip.
    if let Ok(v) = SignedPrekey::decode(data, root) {
        let again = SignedPrekey::decode(&v.encode(), root).expect("re-encoded signed prekey decodes");
        assert_eq!(again, v);
    }
    if let Ok(v) = PqPrekey::decode(data, root) {
        let again = PqPrekey::decode(&v.encode(), root).expect("re-encoded PQ prekey decodes");
        assert_eq!(again, v);
    }
});
