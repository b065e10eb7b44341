//! Decoding arbitrary bytes as a `DirectoryEntry` never panics; a successful decode
//! re-encodes to something that decodes (signature still verifying) to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = chorus_wire::DirectoryEntry::decode(data) {
        let again =
            chorus_wire::DirectoryEntry::decode(&v.encode()).expect("re-encoded entry decodes");
        assert_eq!(again, v);
    }
});
