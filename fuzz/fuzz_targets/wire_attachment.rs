//! Decoding arbitrary bytes as an `Attachment` (a file a message carries) never panics;
//! a successful decode passes its own checks and re-encodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = chorus_wire::Attachment::decode(data) {
        v.check().expect("a decoded attachment passes its checks");
        assert!(v.parts() >= 1);
        let again = chorus_wire::Attachment::decode(&v.encode()).expect("re-encoded attachment decodes");
        assert_eq!(again, v);
    }
});
