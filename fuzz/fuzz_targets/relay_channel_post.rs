//! Fuzz the relay's `ChannelPostRequest` decoder: arbitrary bytes must decode or be refused
//! by name, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{ChannelPostRequest, RefusalKind, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<ChannelPostRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(req.payload.0.len() <= chorus_relay_api::limits::MAX_RENDEZVOUS_MESSAGE_BYTES);
        }
        // Every refusal names its rule, and only malformed JSON is called malformed.
        Err(e) => assert!(
            !e.code.is_empty() && (e.kind == RefusalKind::Malformed) == (e.code == "malformed"),
            "{e:?}"
        ),
    }
});
