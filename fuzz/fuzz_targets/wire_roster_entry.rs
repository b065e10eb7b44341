//! Decoding arbitrary bytes as a signed roster entry never panics; an entry that decodes
//! (its signature verified) keeps its exact bytes, and decoding those again gives the
//! same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = chorus_wire::RosterEntry::decode(data) {
        assert_eq!(entry.as_bytes(), data);
        assert_eq!(chorus_wire::RosterEntry::decode(entry.as_bytes()).ok(), Some(entry));
    }
});
