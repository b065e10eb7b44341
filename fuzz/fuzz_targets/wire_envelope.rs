//! Decoding arbitrary bytes as an `Envelope` never panics; a successful decode re-encodes
//! to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = chorus_wire::Envelope::decode(data) {
        let again = chorus_wire::Envelope::decode(&v.encode()).expect("re-encoded envelope decodes");
        assert_eq!(again, v);
    }
});
