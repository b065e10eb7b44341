//! Fuzz the relay's path-segment and page-query parsing: ids must parse only from
//! exactly 64 hex digits, and a page limit is accepted only within bounds.
#![no_main]

use chorus_relay_api::{Id32, PageQuery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(id) = Id32::parse(s) {
            assert_eq!(id.to_string(), s.to_ascii_lowercase());
        }
    }
    if data.len() >= 12 {
        let after = i64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
        let limit = u32::from_le_bytes(data[8..12].try_into().unwrap_or([0; 4]));
        let q = PageQuery { after, limit: Some(limit) };
        if let Ok(n) = q.page() {
            assert!(n >= 1 && n <= chorus_relay_api::limits::MAX_PAGE && after >= 0);
        }
    }
});
