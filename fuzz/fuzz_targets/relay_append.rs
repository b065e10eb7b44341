//! Fuzz the relay's `AppendRequest` decoder: arbitrary bytes must decode or be refused
//! with a 4xx code, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{AppendRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<AppendRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(!req.records.is_empty() && req.records.len() <= chorus_relay_api::limits::MAX_APPEND_BATCH);
        }
        Err(e) => assert!(e.status.is_client_error(), "{}", e.code),
    }
});
