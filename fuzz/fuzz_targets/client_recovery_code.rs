//! Parsing arbitrary text as a recovery code never panics; a successful parse
//! re-encodes to a code that parses to the same slot.
#![no_main]

use chorus_client::device::recovery::{decode_code, encode_code};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = decode_code(s) {
        let again = decode_code(&encode_code(&code)).expect("re-encoded code decodes");
        assert_eq!(again.slot(), code.slot());
    }
});
