//! Decoding arbitrary bytes as a history chunk never panics; a decoded chunk
//! re-encodes to bytes that decode to the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = chorus_wire::HistoryChunk::decode(data) {
        let again = chorus_wire::HistoryChunk::decode(&c.encode()).expect("re-decodes");
        assert_eq!(again, c);
    }
});
