//! Fuzz the relay's `ChannelPostRequest` decoder: arbitrary bytes must decode or be refused
//! with a 4xx code, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{ChannelPostRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<ChannelPostRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(req.payload.0.len() <= chorus_relay_api::limits::MAX_RENDEZVOUS_MESSAGE_BYTES);
        }
        Err(e) => assert!(e.status.is_client_error(), "{}", e.code),
    }
});
