//! Decoding arbitrary bytes as a link channel message never panics; a decoded message
//! re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = chorus_wire::LinkMessage::decode(data) {
        assert_eq!(chorus_wire::LinkMessage::decode(&m.encode()).ok(), Some(m));
    }
});
