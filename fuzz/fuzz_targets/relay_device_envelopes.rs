//! Fuzz the relay's `PostDeviceEnvelopesRequest` and `PutDeviceListRequest` decoders:
//! arbitrary bytes must decode or be refused by name, never panic, and anything
//! accepted must be within bounds (copies, bytes, distinct devices).
#![no_main]

use chorus_relay_api::{
    PostDeviceEnvelopesRequest, PutDeviceListRequest, RefusalKind, Refusal, decode,
};
use libfuzzer_sys::fuzz_target;

fn named(e: &Refusal) -> bool {
    !e.code.is_empty() && (e.kind == RefusalKind::Malformed) == (e.code == "malformed")
}

fuzz_target!(|data: &[u8]| {
    match decode::<PostDeviceEnvelopesRequest>(data) {
        Ok(req) => {
            assert!(!req.copies.is_empty());
            assert!(req.copies.len() <= chorus_wire::limits::MAX_LISTED_DEVICES);
            let total: usize = req.copies.iter().map(|c| c.payload.0.len()).sum();
            assert!(total <= chorus_relay_api::limits::MAX_DEVICE_POST_BYTES);
            let mut devices: Vec<_> = req.copies.iter().map(|c| c.device).collect();
            devices.sort_unstable();
            devices.dedup();
            assert_eq!(devices.len(), req.copies.len());
        }
        Err(e) => assert!(named(&e), "{e:?}"),
    }
    match decode::<PutDeviceListRequest>(data) {
        Ok(req) => assert!(req.list.0.len() <= chorus_wire::limits::MAX_DEVICE_LIST_LEN),
        Err(e) => assert!(named(&e), "{e:?}"),
    }
});
