//! Decoding arbitrary bytes as a provisioning bundle never panics; a decoded bundle
//! re-encodes to bytes that decode to the same keys.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = chorus_wire::ProvisioningBundle::decode(data) {
        let again = chorus_wire::ProvisioningBundle::decode(&b.encode()).expect("re-decodes");
        assert_eq!(again.dh.public_key(), b.dh.public_key());
        assert_eq!((again.log_id, again.checkpoint), (b.log_id, b.checkpoint));
    }
});
