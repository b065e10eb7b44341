//! Fuzz the relay's `SessionRequest` decoder: arbitrary bytes must decode or be refused
//! with a 4xx code, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{SessionRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<SessionRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert_eq!(req.signature.0.len(), 64);
        }
        Err(e) => assert!(e.status.is_client_error(), "{}", e.code),
    }
});
