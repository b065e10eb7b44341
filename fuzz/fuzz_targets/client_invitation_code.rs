//! Parsing arbitrary text as an invitation code never panics; a successful parse
//! re-encodes to a code that parses to the same invitation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(inv) = chorus_client::code::decode(s) {
        let code = chorus_client::code::encode(&inv);
        let again = chorus_client::code::decode(&code).expect("re-encoded code decodes");
        assert_eq!(again, inv);
    }
});
