//! A new device's hello, as the approving device checks it: arbitrary bytes never
//! panic, and nothing without a valid signature by the key it names is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let code = chorus_client::link::LinkCode {
        relay_url: "https://relay.example".into(),
        channel: [1; 32],
        ephemeral: [9; 32],
    };
    let (commit, hello) = data.split_at(data.len().min(32));
    let _ = chorus_client::link::verify_hello(hello, &code, commit);
});
