//! Fuzz the relay's `PostEnvelopeRequest` decoder: arbitrary bytes must decode or be refused
//! with a 4xx code, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{PostEnvelopeRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<PostEnvelopeRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(req.payload.0.len() <= chorus_relay_api::limits::MAX_ENVELOPE_BYTES);
        }
        Err(e) => assert!(e.status.is_client_error(), "{}", e.code),
    }
});
