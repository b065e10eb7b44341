//! Parsing arbitrary text as a `fingerprint@relay` address never panics; a parsed
//! address has exactly 30 ASCII digits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = s.parse::<chorus_client::Address>() {
        assert_eq!(a.digits.len(), 30);
        assert!(a.digits.bytes().all(|b| b.is_ascii_digit()));
    }
});
