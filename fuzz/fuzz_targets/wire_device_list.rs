//! Decoding arbitrary bytes as a device list never panics; a list that decodes (its
//! root signature verified, sorted, bounded) encodes to bytes that decode to the same
//! list. The first 32 bytes name the root the caller expects.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((root, bytes)) = data.split_at_checked(32) else {
        return;
    };
    let Ok(root) = chorus_crypto::RootPublicKey::from_slice(root) else {
        return;
    };
    if let Ok(list) = chorus_wire::DeviceList::decode(bytes, &root) {
        assert!(!list.devices().is_empty());
        assert!(list.devices().len() <= chorus_wire::limits::MAX_LISTED_DEVICES);
        assert!(list.devices().windows(2).all(|w| w[0].device < w[1].device));
        assert_eq!(
            chorus_wire::DeviceList::decode(&list.encode(), &root).ok(),
            Some(list)
        );
    }
});
