//! Fuzz the relay's `AddDeviceRequest` decoder: arbitrary bytes must decode or be refused
//! with a 4xx code, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{AddDeviceRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<AddDeviceRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            let _ = req.device_id;
        }
        Err(e) => assert!(e.status.is_client_error(), "{}", e.code),
    }
});
