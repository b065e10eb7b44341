//! `unpad` never panics, and `pad` then `unpad` is the identity.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chorus_wire::unpad(data);
    if let Ok(p) = chorus_wire::pad(data) {
        assert_eq!(chorus_wire::unpad(&p).expect("padding round-trips"), data);
    }
});
