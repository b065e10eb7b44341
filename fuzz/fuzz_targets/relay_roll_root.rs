//! Fuzz the relay's `RollRootRequest` decoder (`PUT /v1/logs/{log}/root`): arbitrary
//! bytes must decode or be refused by name, never panic, and anything accepted must be
//! within bounds.
//! (The authorization inside is a roster entry: `wire_roster_entry` fuzzes that.)
#![no_main]

use chorus_relay_api::{RefusalKind, RollRootRequest, Validate, decode};
use chorus_relay_api::limits::MAX_AUTHORIZATION_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<RollRootRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(req.authorization.0.len() <= MAX_AUTHORIZATION_BYTES);
        }
        // Every refusal names its rule, and only malformed JSON is called malformed.
        Err(e) => assert!(
            !e.code.is_empty() && (e.kind == RefusalKind::Malformed) == (e.code == "malformed"),
            "{e:?}"
        ),
    }
});
