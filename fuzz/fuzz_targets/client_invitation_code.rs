//! Parsing arbitrary text as an invitation code (short or long) never panics; a
//! successful parse re-encodes to a code that parses to the same thing.
#![no_main]

use chorus_client::code::{self, Code};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match code::decode(s) {
        Ok(Code::Full(inv)) => {
            let again = code::decode(&code::encode(&inv)).expect("re-encoded code decodes");
            assert!(matches!(again, Code::Full(i) if *i == *inv));
        }
        Ok(Code::Short { relay_url, secret }) => {
            let again = code::decode(&code::encode_short(&relay_url, &secret))
                .expect("re-encoded code decodes");
            let Code::Short { relay_url: url, secret: s } = again else {
                panic!("a short code re-encodes short");
            };
            assert_eq!(url, relay_url);
            assert_eq!(s.to_bytes(), secret.to_bytes());
        }
        Err(_) => {}
    }
});
