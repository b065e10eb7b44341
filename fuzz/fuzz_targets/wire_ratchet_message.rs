//! Decoding arbitrary bytes as a `RatchetMessage` never panics, and a decoded message
//! keeps the exact header bytes it arrived with (the AEAD's associated data).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = chorus_wire::RatchetMessage::decode(data) {
        let again = chorus_wire::RatchetHeader::decode(&m.header_bytes).expect("header bytes decoded once");
        assert_eq!(again, m.header);
    }
});
