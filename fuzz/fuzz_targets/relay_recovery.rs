//! Fuzz the relay's recovery-slot request decoders (`RecoveryKitRequest`,
//! `RecoveryStateRequest`): arbitrary bytes must decode or be refused by name, never
//! panic, and anything accepted must be within bounds.
#![no_main]

use chorus_relay_api::limits::{MAX_RECOVERY_KIT_BYTES, MAX_RECOVERY_STATE_BYTES};
use chorus_relay_api::{
    RecoveryKitRequest, RecoveryStateRequest, Refusal, RefusalKind, Validate, decode,
};
use libfuzzer_sys::fuzz_target;

fn named(e: &Refusal) {
    assert!(
        !e.code.is_empty() && (e.kind == RefusalKind::Malformed) == (e.code == "malformed"),
        "{e:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    match decode::<RecoveryKitRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(!req.kit.0.is_empty() && req.kit.0.len() <= MAX_RECOVERY_KIT_BYTES);
        }
        Err(e) => named(&e),
    }
    match decode::<RecoveryStateRequest>(data) {
        Ok(req) => {
            assert!(req.validate().is_ok());
            assert!(!req.state.0.is_empty() && req.state.0.len() <= MAX_RECOVERY_STATE_BYTES);
        }
        Err(e) => named(&e),
    }
});
