//! Fuzz the relay's `CreateChannelRequest` decoder: arbitrary bytes must decode or be refused
//! with a 4xx code, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{CreateChannelRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<CreateChannelRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            let _ = req.channel_id;
        }
        Err(e) => assert!(e.status.is_client_error(), "{}", e.code),
    }
});
