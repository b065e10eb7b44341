//! Parsing arbitrary text as a link code never panics; a successful parse re-encodes to
//! a code that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = chorus_client::link::LinkCode::decode(s) {
        let again = chorus_client::link::LinkCode::decode(&code.encode())
            .expect("re-encoded code decodes");
        assert_eq!(again, code);
    }
});
