//! Decoding arbitrary bytes as a log event never panics; a decoded event re-encodes to
//! bytes that decode to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = chorus_wire::LogEvent::decode(data) {
        assert_eq!(chorus_wire::LogEvent::decode(&event.encode()).ok(), Some(event));
    }
});
