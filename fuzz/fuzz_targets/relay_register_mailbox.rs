//! Fuzz the relay's `RegisterMailboxRequest` decoder: arbitrary bytes must decode or be refused
//! with a 4xx code, never panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::{RegisterMailboxRequest, Validate, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<RegisterMailboxRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            let _ = req.mailbox_id;
        }
        Err(e) => assert!(e.status.is_client_error(), "{}", e.code),
    }
});
