//! Fuzz the relay's `TrimRequest` decoder: arbitrary bytes must decode or be refused
//! by name, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{RefusalKind, TrimRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<TrimRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(req.below_seq >= 0);
        }
        // Every refusal names its rule, and only malformed JSON is called malformed.
        Err(e) => assert!(
            !e.code.is_empty() && (e.kind == RefusalKind::Malformed) == (e.code == "malformed"),
            "{e:?}"
        ),
    }
});
