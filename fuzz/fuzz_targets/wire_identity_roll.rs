//! Decoding arbitrary bytes as an identity roll never panics; a roll that decodes (both
//! signatures and the new identity's DH signature verified) encodes to bytes that
//! decode to the same roll.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(roll) = chorus_wire::IdentityRoll::decode(data) {
        assert_ne!(roll.old_root, roll.new_identity.root);
        assert_eq!(chorus_wire::IdentityRoll::decode(&roll.encode()).ok(), Some(roll));
    }
});
