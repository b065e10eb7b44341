//! Restoring arbitrary bytes as a session snapshot never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chorus_core::Session::restore(data, 0);
    let _ = chorus_core::Session::restore_stale(data, 0);
});
