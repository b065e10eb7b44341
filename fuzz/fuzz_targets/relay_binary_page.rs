//! Fuzz the client's reading of the relay's binary pages (`chorus_relay_api::binary`):
//! arbitrary bytes must decode or be refused by name, never panic, and a page that
//! decodes must survive its own round trip.
#![no_main]

use chorus_relay_api::binary::{self, BinaryError};
use chorus_relay_api::{BatchReadResponse, RecordsPage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match binary::decode::<RecordsPage>(data) {
        Ok(page) => {
            let again: RecordsPage = binary::decode(&binary::encode(&page)).unwrap();
            assert_eq!(again.records, page.records);
            assert_eq!((again.head_seq, again.first_seq, again.more), (page.head_seq, page.first_seq, page.more));
        }
        Err(BinaryError::Empty) => assert!(data.is_empty()),
        Err(BinaryError::Version(v)) => assert_ne!(v, binary::VERSION),
        Err(BinaryError::Malformed(_) | BinaryError::Trailing(_)) => {}
    }
    let _ = binary::decode::<BatchReadResponse>(data);
});
