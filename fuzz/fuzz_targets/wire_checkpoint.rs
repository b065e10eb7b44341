//! Decoding arbitrary bytes as a checkpoint never panics; a decoded checkpoint
//! re-encodes to bytes that decode to the same rows.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = chorus_wire::Checkpoint::decode(data) {
        let again = chorus_wire::Checkpoint::decode(&c.encode()).expect("re-decodes");
        assert_eq!(again.rows(), c.rows());
    }
});
