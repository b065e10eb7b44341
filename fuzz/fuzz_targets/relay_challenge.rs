//! Fuzz the relay's `ChallengeRequest` decoder: arbitrary bytes must decode or be refused
//! by name, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{ChallengeRequest, RefusalKind, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<ChallengeRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            let _ = (req.log_id, req.device_id);
        }
        // Every refusal names its rule, and only malformed JSON is called malformed.
        Err(e) => assert!(
            !e.code.is_empty() && (e.kind == RefusalKind::Malformed) == (e.code == "malformed"),
            "{e:?}"
        ),
    }
});
