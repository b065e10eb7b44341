//! Decoding arbitrary bytes as a `Payload` never panics; a successful decode re-encodes
//! (encoding a decoded payload never fails) to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = chorus_wire::Payload::decode(data) {
        let bytes = v.encode().expect("a decoded payload encodes");
        let again = chorus_wire::Payload::decode(&bytes).expect("re-encoded payload decodes");
        assert_eq!(again, v);
    }
});
